package heal

import (
	"errors"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the heal engine's Prometheus metrics: heals, bytes pushed,
// the background queue and the sweep. A nil *Metrics records nothing.
type Metrics struct {
	heals        *prometheus.CounterVec
	bytesPushed  prometheus.Counter
	healDuration prometheus.Histogram
	queueDepth   prometheus.Gauge
	dropped      *prometheus.CounterVec
	dataLoss     prometheus.Counter
	images       *prometheus.GaugeVec
	lastSweep    prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		heals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_heals_total",
			Help: "Heals by result: healed, nothing (registry already whole), partial, denied (the root is on the deny list), failed.",
		}, []string{"result"}),
		bytesPushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmend_pushed_bytes_total",
			Help: "Bytes uploaded to registries by heals.",
		}),
		healDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "regmend_heal_duration_seconds",
			Help:    "Duration of heals.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmend_heal_queue_depth",
			Help: "Heals waiting in the background queue.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmend_heal_queue_dropped_total",
			Help: "Heal requests not queued, by reason: full, backoff (registry failing), recent (healed a moment ago).",
		}, []string{"reason"}),
		dataLoss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmend_local_data_loss_total",
			Help: "Local blobs found not to match their digest; never pushed.",
		}),
		images: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmend_images",
			Help: "Images by state at the last sweep: healthy, healable, broken, unreachable.",
		}, []string{"state"}),
		lastSweep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmend_last_sweep_timestamp_seconds",
			Help: "When the last sweep finished.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.heals, m.bytesPushed, m.healDuration, m.queueDepth, m.dropped, m.dataLoss, m.images, m.lastSweep)
	}
	return m
}

func (m *Metrics) drop(reason string) {
	if m != nil {
		m.dropped.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) depth(n int) {
	if m != nil {
		m.queueDepth.Set(float64(n))
	}
}

// heal records one heal's outcome.
func (m *Metrics) heal(res *Result, err error, took time.Duration) {
	if m == nil {
		return
	}
	m.healDuration.Observe(took.Seconds())
	if res != nil {
		m.bytesPushed.Add(float64(res.BytesPushed))
	}
	switch {
	case err != nil && res != nil && errors.Is(err, errNotHealable):
		m.heals.WithLabelValues("partial").Inc()
	case errors.Is(err, errDenied):
		m.heals.WithLabelValues("denied").Inc()
	case err != nil:
		if errdefs.IsDataLoss(err) {
			m.dataLoss.Inc()
		}
		m.heals.WithLabelValues("failed").Inc()
	case res.Pushed+res.Mounted == 0:
		m.heals.WithLabelValues("nothing").Inc()
	default:
		m.heals.WithLabelValues("healed").Inc()
	}
}

// Sweep records a sweep's image counts by state.
func (m *Metrics) Sweep(byState map[string]int, at time.Time) {
	if m == nil {
		return
	}
	for _, s := range States {
		m.images.WithLabelValues(string(s)).Set(float64(byState[string(s)]))
	}
	m.lastSweep.Set(float64(at.Unix()))
}
