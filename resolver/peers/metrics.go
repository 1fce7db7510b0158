package peers

import "github.com/prometheus/client_golang/prometheus"

// Metrics are cluster mode's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	mismatch prometheus.Counter
	refused  *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_peer_requests_total",
			Help: "Requests this node made to peers, by outcome: hit, miss, error (transport, timeout, bad answer), mismatch (bytes that did not match their digest), skipped (peer recently failed).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_peer_bytes_total",
			Help: "Content bytes exchanged with peers, by direction: from_peers (received and passed on verified), to_peers (served by the peer endpoint).",
		}, []string{"direction"}),
		mismatch: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmend_peer_digest_mismatches_total",
			Help: "Responses from peers whose bytes did not match their digest; the response to containerd was cut short.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_peer_endpoint_refused_total",
			Help: "Peer endpoint requests refused with 401, by reason: missing, wrong, unavailable (no usable token file).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.bytes, m.mismatch, m.refused)
	}
	return m
}

func (m *Metrics) request(outcome string) {
	if m != nil {
		m.requests.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) addBytes(direction string, n int64) {
	if m != nil && n > 0 {
		m.bytes.WithLabelValues(direction).Add(float64(n))
	}
}

func (m *Metrics) digestMismatch() {
	if m != nil {
		m.mismatch.Inc()
		m.requests.WithLabelValues("mismatch").Inc()
	}
}

func (m *Metrics) refusal(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}
