package harness

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regmend/regmend/internal/daemon"
)

// Server is a running `regmend serve` (or the plugin in containerd).
type Server struct {
	Proc    *Proc
	Mirror  string // http://127.0.0.1:PORT
	Metrics string // http://127.0.0.1:PORT, serving /metrics and /healthz
	// Peer is the peer endpoint's host:port, "" without one.
	Peer string

	addrFile string // where serve writes its addresses
}

// ServeSpec says how to run `regmend serve`.
type ServeSpec struct {
	Node     *Containerd
	Registry string // host:port served and healed
	LogLevel string // default debug
	// Name labels the process; default "regmend-serve".
	Name string
	// PeerListener, if set, is handed to serve as its peer endpoint
	// (--peer-listen fd://3), for peers that must be named before it starts.
	PeerListener *Listener
	Extra        []string
}

// StartServe runs `regmend serve` for spec.Registry against spec.Node on
// loopback port 0, without the periodic sweep, reads the addresses it bound
// from its --addr-file and waits for /healthz. It stops on t's cleanup.
func StartServe(t testing.TB, spec ServeSpec) *Server {
	t.Helper()
	s := StartServeProc(t, spec)
	s.Await(t, 20*time.Second)
	return s
}

// serveArgs are the arguments of `regmend serve` for spec (on port 0,
// writing its addresses to addrFile), and the listeners to hand it.
func serveArgs(spec ServeSpec, addrFile string) ([]string, []*Listener) {
	if spec.LogLevel == "" {
		spec.LogLevel = "debug"
	}
	args := []string{
		"-a", spec.Node.Socket(), "-n", spec.Node.Namespace(), "--hosts-dir", spec.Node.HostsDir(),
		"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--registry", spec.Registry, "--sweep-interval", "0", "--log-level", spec.LogLevel,
	}
	var lns []*Listener
	if spec.PeerListener != nil {
		args = append(args, "--peer-listen", FDSetting(0))
		lns = append(lns, spec.PeerListener)
	}
	return append(args, spec.Extra...), lns
}

// StartServeProc starts `regmend serve` as StartServe does, without waiting
// for it: Server.Await does, so that many can start at once.
func StartServeProc(t testing.TB, spec ServeSpec) *Server {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "regmend-serve"
	}
	s := &Server{addrFile: filepath.Join(t.TempDir(), "addrs.json")}
	args, lns := serveArgs(spec, s.addrFile)
	s.Proc = StartProc(t, ProcSpec{Name: spec.Name, Path: ProductBinary(t, "regmend"), Args: args, Listeners: lns})
	return s
}

// Await reads the addresses of s (started by StartServeProc) from its addr
// file and waits for /healthz, for up to timeout in all.
func (s *Server) Await(t testing.TB, timeout time.Duration) {
	t.Helper()
	if s.addrFile == "" {
		t.Fatalf("%s was not started by StartServeProc", s.Proc.Name())
	}
	start := time.Now()
	s.SetAddrs(ReadAddrFile(t, s.Proc, s.addrFile, timeout))
	s.WaitHealthy(t, timeout-time.Since(start))
}

// SetAddrs sets s's URLs from the addresses regmend reported.
func (s *Server) SetAddrs(a daemon.Addrs) {
	s.Mirror, s.Peer = "http://"+a.Mirror, a.Peer
	if a.Metrics != "" {
		s.Metrics = "http://" + a.Metrics
	}
}

// WaitHealthy waits up to timeout for s's /healthz, failing the test at
// once if s.Proc exits.
func (s *Server) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	err := WaitFor(timeout, s.Proc, s.Proc.Name()+" /healthz", func() error {
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
