package mirror

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

// mirrorFixture serves the fixture's store through a mirror for the
// fixture's registry, with a running heal queue; both report their metrics
// to the returned registry.
func mirrorFixture(t *testing.T) (*healtest.Fixture, *heal.Queue, *httptest.Server, *prometheus.Registry) {
	t.Helper()
	f := healtest.New(t)
	remote := f.Remote(t, registry.WithRegistries(f.Host), registry.WithRetry(3, time.Millisecond))
	healer, err := heal.NewHealer(f.CS, remote)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	q, err := heal.NewQueue(healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithQueueMetrics(heal.NewMetrics(reg)))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)
	srv := httptest.NewServer(New(f.CS, remote, WithHealQueue(q), WithMetrics(NewMetrics(reg))))
	t.Cleanup(srv.Close)
	return f, q, srv, reg
}

func get(t *testing.T, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestMirrorServesLikeARegistry(t *testing.T) {
	f, _, srv, _ := mirrorFixture(t)
	m1 := imagetest.Manifest(t, imagetest.Docker, healtest.AMD64, 2, 4096)
	imagetest.Push(t, f.Base, "team/app", "v1", m1) // the registry, for comparison
	imagetest.WriteLocal(t, f.CS, f.Host, "team/app", m1)
	ns := "?ns=" + f.Host

	for _, c := range []struct {
		name, kind string
		b          imagetest.Blob
	}{{"manifest", "manifests", m1.Blob}, {"layer", "blobs", m1.Layers[0]}, {"config", "blobs", *m1.Config}} {
		t.Run(c.name, func(t *testing.T) {
			path := "/v2/team/app/" + c.kind + "/" + c.b.Desc.Digest.String()
			for _, method := range []string{http.MethodHead, http.MethodGet} {
				mine, body := get(t, method, srv.URL+path+ns)
				theirs, _ := get(t, method, f.Base+path)
				if mine.StatusCode != 200 {
					t.Fatalf("%s: status %d", method, mine.StatusCode)
				}
				for _, h := range []string{"Content-Length", "Docker-Content-Digest"} {
					if mine.Header.Get(h) != theirs.Header.Get(h) {
						t.Errorf("%s %s = %q, registry sends %q", method, h, mine.Header.Get(h), theirs.Header.Get(h))
					}
				}
				if c.kind == "manifests" && mine.Header.Get("Content-Type") != c.b.Desc.MediaType {
					t.Errorf("manifest Content-Type = %q, want %q", mine.Header.Get("Content-Type"), c.b.Desc.MediaType)
				}
				if method == http.MethodGet && string(body) != string(c.b.Data) {
					t.Error("GET body differs from the content")
				}
				if method == http.MethodHead && len(body) != 0 {
					t.Error("HEAD sent a body")
				}
			}
		})
	}

	t.Run("range", func(t *testing.T) {
		l := m1.Layers[1]
		resp, body := get(t, http.MethodGet, srv.URL+"/v2/team/app/blobs/"+l.Desc.Digest.String()+ns, "Range", "bytes=100-1123")
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("status %d, want 206", resp.StatusCode)
		}
		if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 100-1123/%d", l.Desc.Size); got != want {
			t.Errorf("Content-Range = %q, want %q", got, want)
		}
		if string(body) != string(l.Data[100:1124]) {
			t.Error("range body differs")
		}
	})
}

func TestMirrorRefusals(t *testing.T) {
	f, q, srv, _ := mirrorFixture(t)
	m1 := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", m1)
	foreign := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.WriteLocal(t, f.CS, "elsewhere.example", "app", foreign)
	d := m1.Desc.Digest.String()
	ns := "?ns=" + f.Host

	for _, c := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"tag", "GET", "/v2/app/manifests/v1" + ns, 404, "MANIFEST_UNKNOWN"},
		{"no ns", "GET", "/v2/app/manifests/" + d, 404, "NAME_UNKNOWN"},
		{"ns outside allow-list", "GET", "/v2/app/manifests/" + d + "?ns=other.example:5000", 404, "NAME_UNKNOWN"},
		{"content from another registry", "GET", "/v2/app/manifests/" + foreign.Desc.Digest.String() + ns, 404, "MANIFEST_UNKNOWN"},
		{"absent", "GET", "/v2/app/blobs/" + digest.FromString("nope").String() + ns, 404, "BLOB_UNKNOWN"},
		{"uppercase name", "GET", "/v2/App/manifests/" + d + ns, 400, "NAME_INVALID"},
		{"traversal", "GET", "/v2/../../etc/manifests/" + d + ns, 400, "NAME_INVALID"},
		{"bad digest", "GET", "/v2/app/blobs/sha256:xyz" + ns, 400, "DIGEST_INVALID"},
		{"unknown algorithm", "GET", "/v2/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e" + ns, 400, "DIGEST_INVALID"},
		{"bad ns", "GET", "/v2/app/manifests/" + d + "?ns=a/b", 400, "NAME_INVALID"},
		{"not the API", "GET", "/v3/app/manifests/" + d + ns, 404, "NAME_UNKNOWN"},
		{"put", "PUT", "/v2/app/manifests/" + d + ns, 405, "UNSUPPORTED"},
		{"post", "POST", "/v2/app/blobs/uploads/" + ns, 405, "UNSUPPORTED"},
		{"delete", "DELETE", "/v2/app/manifests/" + d + ns, 405, "UNSUPPORTED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
			req.URL.Opaque = strings.SplitN(c.path, "?", 2)[0] // keep ".." as sent
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Errors []struct{ Code string } `json:"errors"`
			}
			json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != c.status || len(body.Errors) != 1 || body.Errors[0].Code != c.code {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, body.Errors, c.status, c.code)
			}
		})
	}
	if n := q.Len(); n != 0 {
		t.Errorf("refused requests queued %d heals", n)
	}
	if w := f.Log.All(); len(w) != 0 {
		t.Errorf("refused requests reached the registry: %v", w)
	}
}

func TestMirrorHealsInBackgroundOncePerRoot(t *testing.T) {
	f, q, srv, reg := mirrorFixture(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	url := srv.URL + "/v2/app/manifests/" + m1.Desc.Digest.String() + "?ns=" + f.Host

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			resp, _ := get(t, http.MethodGet, url)
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	imagetest.WaitUntil(t, 10*time.Second, "registry healed after the mirror served the manifest", func() bool {
		return imagetest.Has(t, f.Base, "app", "manifests", heal.RetentionTag(m1.Desc.Digest))
	})
	imagetest.WaitUntil(t, 10*time.Second, "heal queue drained", func() bool { return q.Len() == 0 })
	puts := 0
	for _, r := range f.Log.Writes() {
		if r.Method == http.MethodPut && strings.HasSuffix(r.Path, "/manifests/"+m1.Desc.Digest.String()) {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("manifest PUT %d times for 50 requests, want one heal", puts)
	}
	// A request after the heal is served, and its heal request dropped as
	// recent rather than queued: the registry is not asked again.
	f.Log.Reset()
	if resp, _ := get(t, http.MethodGet, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("request after the heal: status %d", resp.StatusCode)
	}
	imagetest.WaitUntil(t, 5*time.Second, "heal request after a recent heal dropped as recent", func() bool {
		return imagetest.Metric(t, reg, "regmend_heal_queue_dropped_total", "reason", "recent") == 1
	})
	if n := q.Len(); n != 0 {
		t.Errorf("%d heals queued after a recent heal", n)
	}
	for _, r := range f.Log.All() {
		t.Errorf("request after a recent heal reached the registry: %v", r)
	}
}

// While containerd is still pulling from the mirror, the heal waits, so it
// does not compete with the pull it serves; it starts once the repository
// goes quiet.
func TestQueueHealsAfterTheRepositoryGoesQuiet(t *testing.T) {
	const quiet = 300 * time.Millisecond
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	var (
		mu    sync.Mutex
		sent  []time.Time // when each mirror request was sent
		first time.Time   // when the heal's first request reached the registry
	)
	f.SetFault(func(http.ResponseWriter, *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		return false
	})
	remote, _ := registry.NewRemote(registry.WithHostsDir(f.HostsDir), registry.WithRegistries(f.Host))
	healer, _ := heal.NewHealer(f.CS, remote)
	q, err := heal.NewQueue(healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithQuietPeriod(quiet))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)
	srv := httptest.NewServer(New(f.CS, remote, WithHealQueue(q)))
	t.Cleanup(srv.Close)

	// Busy for three quiet periods (a heal waits ten at most), one request
	// at a time, as a pull is.
	url := srv.URL + "/v2/app/blobs/" + m1.Layers[0].Desc.Digest.String() + "?ns=" + f.Host
	tick := time.NewTicker(quiet / 6)
	defer tick.Stop()
	for end := time.Now().Add(3 * quiet); time.Now().Before(end); <-tick.C {
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
		if resp, _ := get(t, http.MethodGet, url); resp.StatusCode != http.StatusOK {
			t.Fatalf("mirror: %d", resp.StatusCode)
		}
	}
	imagetest.WaitUntil(t, 5*time.Second, "the heal's first request to the registry", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !first.IsZero()
	})
	imagetest.WaitUntil(t, 5*time.Second, "heal after the repository went quiet", func() bool {
		return imagetest.Has(t, f.Base, "app", "manifests", m1.Desc.Digest.String())
	})

	// Request k queues its heal request after it is sent and before
	// request k+1 is: a heal that waits a quiet period after the last
	// request it saw, k, reaches the registry no sooner than quiet after
	// s[k], and request k+2 is sent after it started. So some request was
	// followed by at most one more within quiet before the registry heard.
	mu.Lock()
	defer mu.Unlock()
	var before []time.Time
	for _, s := range sent {
		if s.Before(first) {
			before = append(before, s)
		}
	}
	longest := time.Duration(0)
	for k, s := range before {
		next := first
		if k+2 < len(before) {
			next = before[k+2]
		}
		longest = max(longest, next.Sub(s))
	}
	if longest < quiet {
		t.Errorf("the heal reached the registry %s after the first of %d mirror requests, while the repository was busy (at most %s between a request and the one after next); want it after a quiet period of %s",
			first.Sub(sent[0]), len(before), longest, quiet)
	}
}
