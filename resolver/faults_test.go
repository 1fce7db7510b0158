package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
)

// uploadDigest returns the digest a blob upload's final PUT commits, or "".
func uploadDigest(r *http.Request) string {
	if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/blobs/uploads/") {
		return ""
	}
	return r.URL.Query().Get("digest")
}

// dropAfter reads n bytes of the request body, then drops the connection
// without an answer, as a proxy or network failure would mid-upload.
func dropAfter(r *http.Request, n int64) {
	io.CopyN(io.Discard, r.Body, n)
	panic(http.ErrAbortHandler)
}

// TestHealSurvivesDroppedUploads: the first upload of every blob loses its
// connection halfway through the body. The heal starts those uploads again
// and completes; the registry commits each blob once, whole.
func TestHealSurvivesDroppedUploads(t *testing.T) {
	f := newFixture(t)
	m1, _ := orphan(t, f, imagetest.OCI)
	var mu sync.Mutex
	dropped := map[string]bool{}
	f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		d := uploadDigest(r)
		if d == "" {
			return false
		}
		mu.Lock()
		first := !dropped[d]
		dropped[d] = true
		mu.Unlock()
		if first {
			dropAfter(r, 100)
		}
		return false
	})
	res, err := f.heal(t, "app", m1)
	if err != nil {
		t.Fatalf("heal with dropped uploads: %v", err)
	}
	if len(dropped) != 4 {
		t.Errorf("dropped the uploads of %d blobs, want all 4 (3 layers, config)", len(dropped))
	}
	for _, b := range append(m1.Layers, *m1.Config) {
		if !f.has(t, "app", "blobs", b) {
			t.Errorf("blob %s not restored", b.Desc.Digest)
		}
		got, err := imagetest.Get(t, f.base, "app", "blobs", b.Desc.Digest.String())
		if err != nil || string(got) != string(b.Data) {
			t.Errorf("blob %s restored with other bytes (err %v)", b.Desc.Digest, err)
		}
	}
	created := 0
	for _, r := range f.log.writes() {
		if r.method == http.MethodPut && strings.Contains(r.path, "/blobs/uploads/") && r.status == http.StatusCreated {
			created++
		}
	}
	if created != 4 {
		t.Errorf("%d blob uploads committed, want 4: each blob once, whole", created)
	}
	if !f.has(t, "app", "manifests", m1.Blob) || res.Pushed != 5 {
		t.Errorf("heal incomplete: pushed %d, want 5", res.Pushed)
	}
}

// TestHealHonoursRetryAfterOnPush: after a 429 with Retry-After on a
// write, nothing more is sent to the registry before that time, not even
// the retry containerd's pusher makes at once on its own.
func TestHealHonoursRetryAfterOnPush(t *testing.T) {
	for _, c := range []struct {
		name  string
		match func(r *http.Request) bool
	}{
		{"upload start", func(r *http.Request) bool {
			return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/")
		}},
		{"manifest put", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, WithConcurrency(1))
			m1, _ := orphan(t, f, imagetest.OCI)
			const refusals = 2
			var (
				mu      sync.Mutex
				refused int
				lastNo  time.Time
				gaps    []time.Duration // from each refusal to the next request
			)
			f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				// A request whose body broke off is containerd re-sending a
				// PUT whose writer had already given up: it was released
				// before the client read the last answer, and never reads its
				// own. Only whole requests count.
				body, err := io.ReadAll(r.Body)
				whole := err == nil && int64(len(body)) == max(r.ContentLength, 0)
				r.Body = io.NopCloser(bytes.NewReader(body))
				mu.Lock()
				defer mu.Unlock()
				if !lastNo.IsZero() && whole {
					gaps = append(gaps, time.Since(lastNo))
					lastNo = time.Time{}
				}
				if !c.match(r) || refused == refusals {
					return false
				}
				refused++
				if whole {
					lastNo = time.Now()
				}
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			})
			start := time.Now()
			if _, err := f.heal(t, "app", m1); err != nil {
				t.Fatalf("heal under 429: %v", err)
			}
			if !f.has(t, "app", "manifests", m1.Blob) {
				t.Fatal("manifest not restored")
			}
			if refused != refusals || len(gaps) == 0 {
				t.Fatalf("refused %d requests (%d whole ones followed by another); want %d", refused, len(gaps), refusals)
			}
			for i, g := range gaps {
				if g < 900*time.Millisecond {
					t.Errorf("refusal %d: asked again after %s, though the registry said Retry-After: 1", i+1, g.Round(time.Millisecond))
				}
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("heal took %s", took)
			}
		})
	}
}

// TestHealRepushesBlobLostBeforeManifest: the registry loses a blob between
// its upload and the manifest PUT (a GC running in between), and refuses the
// manifest with MANIFEST_BLOB_UNKNOWN as distribution does. The heal asks
// again, re-pushes the blob, then the manifest.
func TestHealRepushesBlobLostBeforeManifest(t *testing.T) {
	f := newFixture(t)
	m1, _ := orphan(t, f, imagetest.OCI)
	lost := m1.Layers[0].Desc.Digest
	var once sync.Once
	f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, "/manifests/"+m1.Desc.Digest.String()) {
			return false
		}
		refuse := false
		once.Do(func() {
			refuse = true
			req, _ := http.NewRequest(http.MethodDelete, f.base+"/v2/app/blobs/"+lost.String(), nil)
			if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
				t.Errorf("delete blob during the heal: %v %v", resp, err)
			}
		})
		if !refuse {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":%q}]}`, lost)
		return true
	})
	res, err := f.heal(t, "app", m1)
	if err != nil {
		t.Fatalf("heal: %v", err)
	}
	if !f.has(t, "app", "blobs", m1.Layers[0]) || !f.has(t, "app", "manifests", m1.Blob) {
		t.Fatal("the lost blob or the manifest is missing after the heal")
	}
	uploads, puts := 0, 0
	for _, r := range f.log.writes() {
		switch {
		case r.method == http.MethodPut && strings.HasSuffix(r.path, "/manifests/"+m1.Desc.Digest.String()):
			puts++
		case r.method == http.MethodPut && strings.Contains(r.path, "/blobs/uploads/"):
			uploads++
		}
	}
	if puts != 2 || uploads != 5 {
		t.Errorf("manifest PUT %d times and %d blob uploads, want 2 and 5 (4 blobs, then the lost one again)", puts, uploads)
	}
	if res.Pushed != 5 {
		t.Errorf("result pushed %d, want 5", res.Pushed)
	}
}

// TestChildUnknownSeesRegistryBody: containerd's pusher keeps the
// registry's error body in ErrUnexpectedStatus, which the re-plan reads.
func TestChildUnknownSeesRegistryBody(t *testing.T) {
	f := newFixture(t, WithConcurrency(1))
	m1, _ := orphan(t, f, imagetest.OCI)
	f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}`)
		return true
	})
	_, err := f.heal(t, "app", m1)
	if !childUnknown(err) {
		t.Fatalf("heal err = %v; childUnknown does not see MANIFEST_BLOB_UNKNOWN", err)
	}
	puts := 0
	for _, r := range f.log.writes() {
		if r.method == http.MethodPut && strings.Contains(r.path, "/manifests/") {
			puts++
		}
	}
	if puts != 3 {
		t.Errorf("manifest PUT %d times, want 3 (one per round, then give up)", puts)
	}
}

// TestHealInterruptedThenRerun: a heal stopped mid-upload leaves no
// manifest in the registry; a second heal completes it.
func TestHealInterruptedThenRerun(t *testing.T) {
	f := newFixture(t, WithConcurrency(1))
	m1, _ := orphan(t, f, imagetest.OCI)
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if uploadDigest(r) == "" {
			return false
		}
		once.Do(func() {
			io.CopyN(io.Discard, r.Body, 10)
			cancel()                    // the CLI is interrupted while bytes are in flight
			io.Copy(io.Discard, r.Body) // until the client hangs up
		})
		return false
	})
	_, err := f.healer.Heal(ctx, Target{Registry: f.registry, Repository: "app", Root: m1.Root()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted heal err = %v, want canceled", err)
	}
	if f.has(t, "app", "manifests", m1.Blob) {
		t.Fatal("an interrupted heal left the manifest in the registry before its blobs")
	}
	f.setFault(nil)
	if _, err := f.heal(t, "app", m1); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	for _, b := range m1.Blobs() {
		kind := "blobs"
		if b.Desc.Digest == m1.Desc.Digest {
			kind = "manifests"
		}
		if !f.has(t, "app", kind, b) {
			t.Errorf("%s %s missing after the rerun", kind, b.Desc.Digest)
		}
	}
}

// TestHealReportsLayersGoneLocally: with layers deleted from the local
// store (CRI's discard_unpacked_layers), the heal names them unhealable
// and pushes neither them nor the manifest above them.
func TestHealReportsLayersGoneLocally(t *testing.T) {
	f := newFixture(t)
	m1, _ := orphan(t, f, imagetest.OCI)
	for _, l := range m1.Layers {
		if err := f.cs.Delete(context.Background(), l.Desc.Digest); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.heal(t, "app", m1)
	if !errdefs.IsNotFound(err) || res == nil {
		t.Fatalf("heal err = %v, want a partial heal (not found) with its result", err)
	}
	unhealable := map[digest.Digest]string{}
	for _, n := range res.Nodes {
		if n.Status == StatusUnhealable {
			unhealable[n.Digest] = n.Reason
		}
	}
	for _, l := range m1.Layers {
		if r, ok := unhealable[l.Desc.Digest]; !ok || !strings.Contains(r, "local") {
			t.Errorf("layer %s: unhealable=%v reason %q, want unhealable, absent locally", l.Desc.Digest, ok, r)
		}
	}
	if _, ok := unhealable[m1.Desc.Digest]; !ok || len(unhealable) != 4 {
		t.Errorf("unhealable = %v, want the 3 layers and the manifest", unhealable)
	}
	if f.has(t, "app", "manifests", m1.Blob) {
		t.Error("a manifest whose layers are gone everywhere was pushed")
	}
	for _, r := range f.log.writes() {
		if r.method == http.MethodPut && strings.Contains(r.path, "/manifests/") {
			t.Errorf("manifest written: %v", r)
		}
	}
}

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
	f := newFixture(t)
	var imgs []*imagetest.Object
	for i := range 4 {
		m := imagetest.Manifest(t, imagetest.OCI, amd64, 2, 256)
		imagetest.WriteLocal(t, f.cs, f.registry, fmt.Sprintf("app%d", i), m)
		imgs = append(imgs, m)
	}
	sw := newSwitchable(t, f.base)
	hostsDir := t.TempDir()
	writeHostsTOML(t, hostsDir, f.registry, fmt.Sprintf("server = %q\n", "http://"+sw.addr))
	remote, err := NewRemote(WithHostsDir(hostsDir), WithRegistries(f.registry), WithRetry(3, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	healer, _ := NewHealer(f.cs, remote)
	metrics := NewMetrics(prometheus.NewRegistry())
	const size = 2
	q, err := NewQueue(healer, LocalRoots{Store: f.cs, Blobs: f.cs}, WithQueueSize(size), WithWorkers(1), WithQueueMetrics(metrics))
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	mirror := NewMirror(f.cs, remote, WithHealQueue(q), WithMirrorMetrics(metrics))
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
				resp, body := get(t, http.MethodGet, fmt.Sprintf("%s/v2/app%d/%s/%s?ns=%s", mirrorURL, i, kind, b.Desc.Digest, f.registry))
				if resp.StatusCode != 200 || string(body) != string(b.Data) {
					t.Fatalf("round %d: mirror answered %d for %s while the registry is down", round, resp.StatusCode, b.Desc.Digest)
				}
				maxDepth = max(maxDepth, value(metrics.queueDepth))
				if n := q.Len(); n > size+1 { // queued, plus the one running
					t.Fatalf("%d heals pending with a queue of %d", n, size)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitUntil(t, 10*time.Second, "queue drained", func() bool { return q.Len() == 0 })
	if maxDepth > size {
		t.Errorf("regmend_heal_queue_depth reached %v, over the queue size %d", maxDepth, size)
	}
	full := value(metrics.dropped.WithLabelValues("full"))
	backoff := value(metrics.dropped.WithLabelValues("backoff"))
	if full+backoff == 0 {
		t.Errorf("no heal request dropped (full %v, backoff %v) for 48 requests while the registry was down", full, backoff)
	}
	if failed := value(metrics.heals.WithLabelValues("failed")); failed > 1 {
		t.Errorf("%v heals ran against a registry that was down and backing off, want 1", failed)
	}
	t.Logf("registry down: dropped full=%v backoff=%v, max depth %v", full, backoff, maxDepth)

	sw.up()
	time.Sleep(minRegistryBackoff)
	waitUntil(t, 20*time.Second, "registry healed after it came back", func() bool {
		for i, m := range imgs {
			get(t, http.MethodHead, fmt.Sprintf("%s/v2/app%d/manifests/%s?ns=%s", mirrorURL, i, m.Desc.Digest, f.registry))
		}
		time.Sleep(time.Second) // pulls pause, as they do
		for i, m := range imgs {
			if !imagetest.Has(t, f.base, fmt.Sprintf("app%d", i), "manifests", m.Desc.Digest.String()) {
				return false
			}
		}
		return true
	})
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
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
	f := newFixture(t)
	m := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 64)
	imagetest.WriteLocal(t, f.cs, f.registry, "app", m)
	store := &reconnectingStore{Store: f.cs}
	store.left.Store(5)
	remote, _ := NewRemote(WithHostsDir(f.hostsDir), WithRegistries(f.registry))
	srv := httptest.NewServer(NewMirror(store, remote))
	t.Cleanup(srv.Close)
	resp, body := get(t, http.MethodGet, srv.URL+"/v2/app/manifests/"+m.Desc.Digest.String()+"?ns="+f.registry)
	if resp.StatusCode != 200 || string(body) != string(m.Data) {
		t.Errorf("status %d after containerd came back, want 200 and the manifest", resp.StatusCode)
	}
}

// TestHealGivesUpOnSilentRegistry: a registry that accepts connections and
// never answers (a hung proxy, a black-holed route) does not hang a heal:
// each request is abandoned once nothing moved for the stall timeout,
// retried as a transient failure, and the heal then fails, so the queue can
// back off.
func TestHealGivesUpOnSilentRegistry(t *testing.T) {
	f := newFixture(t)
	m1, _ := orphan(t, f, imagetest.OCI)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { io.Copy(io.Discard, c); c.Close() }) // reads, never answers
		}
	}()
	prev := stallTimeout
	stallTimeout = 300 * time.Millisecond
	t.Cleanup(func() { stallTimeout = prev })
	hostsDir := t.TempDir()
	writeHostsTOML(t, hostsDir, f.registry, fmt.Sprintf("server = %q\n", "http://"+ln.Addr().String()))
	remote, _ := NewRemote(WithHostsDir(hostsDir), WithRetry(2, time.Millisecond))
	h, _ := NewHealer(f.cs, remote)
	start := time.Now()
	_, err = h.Heal(context.Background(), Target{Registry: f.registry, Repository: "app", Root: m1.Root()})
	took := time.Since(start)
	if err == nil || !transient(err) {
		t.Fatalf("heal against a silent registry: err = %v, want a transient failure", err)
	}
	if took > 5*time.Second {
		t.Errorf("heal against a silent registry took %s; each request must give up after the stall timeout", took)
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
}
