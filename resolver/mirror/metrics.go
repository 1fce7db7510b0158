package mirror

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the mirror's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	requests *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_mirror_requests_total",
			Help: "Mirror requests by outcome: served, served_by_peer, not_found, denied (the deny list), not_allowed, bad_request, method_not_allowed.",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests)
	}
	return m
}

func (m *Metrics) request(outcome string) {
	if m != nil {
		m.requests.WithLabelValues(outcome).Inc()
	}
}
