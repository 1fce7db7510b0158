package peers

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/mirror"
)

const (
	testRegistry = "edge:5000"
	testRepo     = "app"
)

type allowAll struct{}

func (allowAll) Allowed(string) bool { return true }

// recordingQueue records heal requests.
type recordingQueue struct {
	mu  sync.Mutex
	got []digest.Digest
}

func (q *recordingQueue) Enqueue(_, _ string, d digest.Digest) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.got = append(q.got, d)
	return true
}

func (q *recordingQueue) requests() []digest.Digest {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]digest.Digest(nil), q.got...)
}

// holderNode is a node whose store holds obj, serving it on a peer endpoint.
type holderNode struct {
	srv     *httptest.Server
	queue   *recordingQueue
	metrics *Metrics
}

func startHolder(t testing.TB, tok secret.Token, obj *imagetest.Object) *holderNode {
	t.Helper()
	cs, _ := imagetest.LocalStore(t)
	if obj != nil {
		imagetest.WriteLocal(t, cs, testRegistry, testRepo, obj)
	}
	h := &holderNode{queue: &recordingQueue{}, metrics: NewMetrics(prometheus.NewRegistry())}
	ep := NewEndpoint(secret.Static(tok), mirror.New(cs, allowAll{}, mirror.WithHealQueue(h.queue)), mirror.New(cs, allowAll{}), h.metrics)
	h.srv = httptest.NewServer(ep)
	t.Cleanup(h.srv.Close)
	return h
}

// startFresh is a node holding nothing whose mirror asks peers at urls.
func startFresh(t testing.TB, tok secret.Token, urls ...string) (*httptest.Server, *Metrics) {
	t.Helper()
	cs, _ := imagetest.LocalStore(t)
	members, err := NewMembership(WithStatic(urls...))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	c, err := NewClient(members, secret.Static(tok), WithTimeout(500*time.Millisecond), WithIdleTimeout(time.Second), WithClientMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mirror.New(cs, allowAll{}, mirror.WithFallback(c)))
	t.Cleanup(srv.Close)
	return srv, m
}

func newToken(t testing.TB) secret.Token {
	t.Helper()
	tok, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func fetchFrom(t *testing.T, base, method, kind string, d digest.Digest, header ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(method, base+"/v2/"+testRepo+"/"+kind+"/"+d.String()+"?ns="+testRegistry, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestFreshNodeServedFromPeer(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 2, 600<<10)
	empty := startHolder(t, tok, nil)
	a := startHolder(t, tok, img)
	fresh, m := startFresh(t, tok, empty.srv.URL, a.srv.URL)

	resp, b, err := fetchFrom(t, fresh.URL, http.MethodGet, "manifests", img.Desc.Digest)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, img.Data) || resp.Header.Get("Content-Type") != img.Desc.MediaType {
		t.Fatalf("manifest: err %v status %v type %q, body equal %v", err, resp.StatusCode, resp.Header.Get("Content-Type"), bytes.Equal(b, img.Data))
	}
	layer := img.Layers[1]
	resp, b, err = fetchFrom(t, fresh.URL, http.MethodHead, "blobs", layer.Desc.Digest)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != layer.Desc.Size || len(b) != 0 {
		t.Fatalf("blob HEAD: err %v status %v length %d", err, resp.StatusCode, resp.ContentLength)
	}
	resp, b, err = fetchFrom(t, fresh.URL, http.MethodGet, "blobs", layer.Desc.Digest)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, layer.Data) {
		t.Fatalf("blob GET: err %v status %v, %d bytes", err, resp.StatusCode, len(b))
	}
	// containerd re-opens with Range: the bytes from the offset, verified
	// against the whole blob.
	resp, b, err = fetchFrom(t, fresh.URL, http.MethodGet, "blobs", layer.Desc.Digest, "Range", "bytes=1000-")
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(b, layer.Data[1000:]) ||
		resp.Header.Get("Content-Range") != "bytes 1000-"+strconv.Itoa(len(layer.Data)-1)+"/"+strconv.Itoa(len(layer.Data)) {
		t.Fatalf("blob Range: err %v status %v range %q, %d bytes", err, resp.StatusCode, resp.Header.Get("Content-Range"), len(b))
	}
	// Serving a peer counts as a local hit on the holder: it queues heals.
	if got := a.queue.requests(); len(got) == 0 {
		t.Error("holder queued no heal for what it served a peer")
	}
	// Handlers count after their last write: give them a moment.
	eventually(t, "from_peers bytes counted", func() bool {
		return value(t, m.bytes.WithLabelValues("from_peers")) >= float64(2*layer.Desc.Size-1000)
	})
	eventually(t, "to_peers bytes counted", func() bool {
		return value(t, a.metrics.bytes.WithLabelValues("to_peers")) >= float64(2*layer.Desc.Size)
	})
	// Absent everywhere: 404.
	if resp, _, err := fetchFrom(t, fresh.URL, http.MethodGet, "blobs", digest.FromString("nowhere")); err != nil || resp.StatusCode != 404 {
		t.Errorf("absent blob: %v %v, want 404", resp.StatusCode, err)
	}
}

// liar answers like a holder of blob, but serves different bytes.
func liar(t *testing.T, blob imagetest.Blob, kind string) *httptest.Server {
	t.Helper()
	bad := bytes.Clone(blob.Data)
	bad[len(bad)/2] ^= 0xff
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/"+testRepo+"/"+kind+"/"+blob.Desc.Digest.String() {
			t.Errorf("unexpected access: %s %s", r.Method, r.URL)
			w.WriteHeader(404)
			return
		}
		w.Header().Set("Docker-Content-Digest", blob.Desc.Digest.String())
		w.Header().Set("Content-Length", strconv.Itoa(len(bad)))
		w.Header().Set("Content-Type", blob.Desc.MediaType)
		if r.Method == http.MethodGet {
			w.Write(bad)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCorruptPeerBytesNeverPassedOnWhole(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 700<<10)
	layer := img.Layers[0]

	fresh, m := startFresh(t, tok, liar(t, layer, "blobs").URL)
	resp, b, err := fetchFrom(t, fresh.URL, http.MethodGet, "blobs", layer.Desc.Digest)
	if err == nil && resp.StatusCode == 200 && int64(len(b)) == layer.Desc.Size {
		t.Fatal("a corrupt blob from a peer was passed on whole")
	}
	if resp != nil && resp.StatusCode == 200 && resp.ContentLength != layer.Desc.Size {
		t.Errorf("Content-Length %d, want %d (a short body must be detectable)", resp.ContentLength, layer.Desc.Size)
	}
	if int64(len(b)) >= layer.Desc.Size {
		t.Errorf("received %d of %d bytes", len(b), layer.Desc.Size)
	}
	if got := value(t, m.mismatch); got != 1 {
		t.Errorf("digest mismatches = %v, want 1", got)
	}

	fresh, m = startFresh(t, tok, liar(t, img.Blob, "manifests").URL)
	resp, _, err = fetchFrom(t, fresh.URL, http.MethodGet, "manifests", img.Desc.Digest)
	if err != nil || resp.StatusCode != 404 {
		t.Errorf("corrupt manifest: status %v err %v, want 404", resp.StatusCode, err)
	}
	if got := value(t, m.mismatch); got != 1 {
		t.Errorf("digest mismatches = %v, want 1", got)
	}
}

func TestSlowOrDeadPeerCutOff(t *testing.T) {
	tok := newToken(t)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	fresh, m := startFresh(t, tok, slow.URL, deadURL)
	start := time.Now()
	resp, _, err := fetchFrom(t, fresh.URL, http.MethodHead, "manifests", digest.FromString("x"))
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("status %v err %v, want 404", resp.StatusCode, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s with a 500ms peer timeout", took)
	}
	if got := value(t, m.requests.WithLabelValues("error")); got != 2 {
		t.Errorf("peer errors = %v, want 2 (slow and dead)", got)
	}
	// Both are skipped for a while: the next miss costs no timeout.
	start = time.Now()
	fetchFrom(t, fresh.URL, http.MethodHead, "manifests", digest.FromString("y"))
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Errorf("second miss took %s; failed peers should be skipped", took)
	}
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// eventually polls cond for up to 2s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("%s: not within 2s", what)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func staticSource(tok secret.Token) secret.Source { return secret.Static(tok) }
