package mirror

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

// switchable is a reverse proxy to a registry that can be taken down
// (its port refuses connections) and brought back on the same address.
type switchable struct {
	t     *testing.T
	addr  string
	proxy http.Handler
	hits  atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func newSwitchable(t *testing.T, target string) *switchable {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	s := &switchable{t: t, proxy: httputil.NewSingleHostReverseProxy(u)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.down)
	return s
}

func (s *switchable) serve(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.proxy.ServeHTTP(w, r)
	})}
	go s.srv.Serve(ln)
}

// down closes the listener and every connection: the port refuses.
func (s *switchable) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func (s *switchable) up() {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// TestQueueBacksOffWhileRegistryDown: with the registry refusing
// connections the mirror still serves every local digest; the heal queue
// stays within its size, drops (and counts) what it cannot take, stops
// healing the registry after the first failure, and heals once the registry
// is back and the backoff has passed.
func TestQueueBacksOffWhileRegistryDown(t *testing.T) {
	f := healtest.New(t)
	var imgs []*imagetest.Object
	for i := range 4 {
		m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 256)
		imagetest.WriteLocal(t, f.CS, f.Host, fmt.Sprintf("app%d", i), m)
		imgs = append(imgs, m)
	}
	sw := newSwitchable(t, f.Base)
	hostsDir := t.TempDir()
	imagetest.WriteHostsTOML(t, hostsDir, f.Host, fmt.Sprintf("server = %q\n", "http://"+sw.addr))
	remote, err := registry.NewRemote(registry.WithHostsDir(hostsDir), registry.WithRegistries(f.Host), registry.WithRetry(3, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	healer, _ := heal.NewHealer(f.CS, remote)
	reg := prometheus.NewRegistry()
	metric := func(name string, labels ...string) float64 { return imagetest.Metric(t, reg, name, labels...) }
	const size = 2
	q, err := heal.NewQueue(healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithQueueSize(size), heal.WithWorkers(1), heal.WithQueueMetrics(heal.NewMetrics(reg)))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)
	mirror := New(f.CS, remote, WithHealQueue(q), WithMetrics(NewMetrics(reg)))
	srv := &http.Server{Handler: mirror}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	mirrorURL := "http://" + ln.Addr().String()

	sw.down()
	var maxDepth float64
	for round := range 3 {
		for i, m := range imgs {
			for _, b := range m.Blobs() {
				kind := "blobs"
				if b.Desc.Digest == m.Desc.Digest {
					kind = "manifests"
				}
				resp, body := get(t, http.MethodGet, fmt.Sprintf("%s/v2/app%d/%s/%s?ns=%s", mirrorURL, i, kind, b.Desc.Digest, f.Host))
				if resp.StatusCode != 200 || string(body) != string(b.Data) {
					t.Fatalf("round %d: mirror answered %d for %s while the registry is down", round, resp.StatusCode, b.Desc.Digest)
				}
				maxDepth = max(maxDepth, metric("regmend_heal_queue_depth"))
				if n := q.Len(); n > size+1 { // queued, plus the one running
					t.Fatalf("%d heals pending with a queue of %d", n, size)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	imagetest.WaitUntil(t, 10*time.Second, "queue drained", func() bool { return q.Len() == 0 })
	if maxDepth > size {
		t.Errorf("regmend_heal_queue_depth reached %v, over the queue size %d", maxDepth, size)
	}
	full := metric("regmend_heal_queue_dropped_total", "reason", "full")
	backoff := metric("regmend_heal_queue_dropped_total", "reason", "backoff")
	if full+backoff == 0 {
		t.Errorf("no heal request dropped (full %v, backoff %v) for 48 requests while the registry was down", full, backoff)
	}
	if failed := metric("regmend_heals_total", "result", "failed"); failed > 1 {
		t.Errorf("%v heals ran against a registry that was down and backing off, want 1", failed)
	}
	t.Logf("registry down: dropped full=%v backoff=%v, max depth %v", full, backoff, maxDepth)

	sw.up()
	time.Sleep(heal.MinRegistryBackoff)
	imagetest.WaitUntil(t, 20*time.Second, "registry healed after it came back", func() bool {
		for i, m := range imgs {
			get(t, http.MethodHead, fmt.Sprintf("%s/v2/app%d/manifests/%s?ns=%s", mirrorURL, i, m.Desc.Digest, f.Host))
		}
		time.Sleep(time.Second) // pulls pause, as they do
		for i, m := range imgs {
			if !imagetest.Has(t, f.Base, fmt.Sprintf("app%d", i), "manifests", m.Desc.Digest.String()) {
				return false
			}
		}
		return true
	})
}

// reconnectingStore answers Unavailable for its first calls, as
// containerd's gRPC client does while it backs off after a restart.
type reconnectingStore struct {
	content.Store
	left atomic.Int32
}

func (s *reconnectingStore) Info(ctx context.Context, d digest.Digest) (ctrcontent.Info, error) {
	if s.left.Add(-1) >= 0 {
		return ctrcontent.Info{}, fmt.Errorf("connection to containerd: %w", errdefs.ErrUnavailable)
	}
	return s.Store.Info(ctx, d)
}

// TestMirrorWaitsForContainerdReconnecting: a request arriving while
// regmend's connection to containerd is still reconnecting is served once
// it is back, not answered 404 (which would fail the pull).
func TestMirrorWaitsForContainerdReconnecting(t *testing.T) {
	f := healtest.New(t)
	m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", m)
	store := &reconnectingStore{Store: f.CS}
	store.left.Store(5)
	remote, _ := registry.NewRemote(registry.WithHostsDir(f.HostsDir), registry.WithRegistries(f.Host))
	srv := httptest.NewServer(New(store, remote))
	t.Cleanup(srv.Close)
	resp, body := get(t, http.MethodGet, srv.URL+"/v2/app/manifests/"+m.Desc.Digest.String()+"?ns="+f.Host)
	if resp.StatusCode != 200 || string(body) != string(m.Data) {
		t.Errorf("status %d after containerd came back, want 200 and the manifest", resp.StatusCode)
	}
}
