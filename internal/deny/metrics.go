package deny

import (
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the deny list's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	denied  *prometheus.CounterVec
	reloads *prometheus.CounterVec
	entries prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_denied_total",
			Help: "Refusals because of the deny list, by where: mirror (answered 404), peer (not served to or fetched from a peer), heal (a root refused or a node not pushed).",
		}, []string{"where"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_deny_reloads_total",
			Help: "Re-reads of a changed deny file by result: ok, refused (the last list stays in force).",
		}, []string{"result"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmend_deny_entries",
			Help: "Entries of the deny list in force.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.denied, m.reloads, m.entries)
	}
	return m
}

// Where the refusals are counted.
const (
	WhereMirror = "mirror"
	WherePeer   = "peer"
	WhereHeal   = "heal"
)

// Counting returns a Denier that answers as d does and counts each denial
// under where. With a nil d it denies nothing.
func (m *Metrics) Counting(where string, d Denier) Denier {
	return counting{d: d, m: m, where: where}
}

type counting struct {
	d     Denier
	m     *Metrics
	where string
}

func (c counting) Denied(registry, repo string, dg digest.Digest) (string, bool) {
	if c.d == nil {
		return "", false
	}
	e, ok := c.d.Denied(registry, repo, dg)
	if ok && c.m != nil {
		c.m.denied.WithLabelValues(c.where).Inc()
	}
	return e, ok
}

func (m *Metrics) reload(ok bool) {
	if m == nil {
		return
	}
	r := "ok"
	if !ok {
		r = "refused"
	}
	m.reloads.WithLabelValues(r).Inc()
}

func (m *Metrics) loaded(l *List) {
	if m != nil {
		m.entries.Set(float64(l.Len()))
	}
}
