package harness

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Server is a running `regmend serve`.
type Server struct {
	Proc    *Proc
	Mirror  string // http://127.0.0.1:PORT
	Metrics string // http://127.0.0.1:PORT, serving /metrics and /healthz
}

// ServeSpec says how to run `regmend serve`.
type ServeSpec struct {
	Node     *Containerd
	Registry string // host:port served and healed
	LogLevel string // default debug
	Extra    []string
}

// StartServe runs `regmend serve` for spec.Registry against spec.Node on
// free loopback ports, without the periodic sweep, and waits for /healthz.
// It stops on t's cleanup.
func StartServe(t testing.TB, spec ServeSpec) *Server {
	t.Helper()
	if spec.LogLevel == "" {
		spec.LogLevel = "debug"
	}
	s := &Server{Mirror: "http://" + FreeAddr(t), Metrics: "http://" + FreeAddr(t)}
	args := append([]string{
		"-a", spec.Node.Socket(), "-n", spec.Node.Namespace(), "--hosts-dir", spec.Node.HostsDir(),
		"serve", "--listen", strings.TrimPrefix(s.Mirror, "http://"), "--metrics-listen", strings.TrimPrefix(s.Metrics, "http://"),
		"--registry", spec.Registry, "--sweep-interval", "0", "--log-level", spec.LogLevel,
	}, spec.Extra...)
	s.Proc = StartProc(t, ProcSpec{Name: "regmend-serve", Path: ProductBinary(t, "regmend"), Args: args})
	err := WaitFor(10*time.Second, s.Proc, "regmend /healthz", func() error {
		resp, err := http.Get(s.Metrics + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Metric sums the samples of the metric family name whose labels include
// every one of labels, each written `key="value"` as in the text format.
func (s *Server) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return ScrapeMetric(t, s.Metrics+"/metrics", name, labels...)
}

// ScrapeMetric reads url in Prometheus text format and sums the samples of
// name whose labels include every one of labels (`key="value"`).
func ScrapeMetric(t testing.TB, url, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics from %s: %v", url, err)
	}
	var sum float64
	for _, m := range families[name].GetMetric() {
		have := map[string]bool{}
		for _, lp := range m.GetLabel() {
			have[fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue())] = true
		}
		match := true
		for _, l := range labels {
			match = match && have[l]
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}
