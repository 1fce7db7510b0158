package resolver

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/regmend/regmend/internal/imagetest"
)

// request is one request the registry answered.
type request struct {
	method, path string
	status       int
}

// requestLog records every request a registry answered, in order.
type requestLog struct {
	mu   sync.Mutex
	reqs []request
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		h.ServeHTTP(rec, r)
		l.mu.Lock()
		l.reqs = append(l.reqs, request{r.Method, r.URL.Path, rec.status})
		l.mu.Unlock()
	})
}

func (l *requestLog) all() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]request(nil), l.reqs...)
}

func (l *requestLog) reset() {
	l.mu.Lock()
	l.reqs = nil
	l.mu.Unlock()
}

// writes returns the requests that change the registry.
func (l *requestLog) writes() []request {
	var out []request
	for _, r := range l.all() {
		if r.method != http.MethodHead && r.method != http.MethodGet {
			out = append(out, r)
		}
	}
	return out
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// fixture is a real local content store, a real in-memory registry behind
// an optional fault injector, and a healer between them.
type fixture struct {
	cs       ctrcontent.Store
	csRoot   string
	base     string // http://127.0.0.1:port
	registry string // 127.0.0.1:port
	log      *requestLog
	hostsDir string
	healer   *Healer
	// fault, when set, may answer a request instead of the registry.
	mu    sync.Mutex
	fault func(w http.ResponseWriter, r *http.Request) bool
}

func newFixture(t *testing.T, opts ...HealerOption) *fixture {
	t.Helper()
	f := &fixture{log: &requestLog{}}
	f.cs, f.csRoot = imagetest.LocalStore(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(f.log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		fault := f.fault
		f.mu.Unlock()
		if fault != nil && fault(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	})))
	t.Cleanup(srv.Close)
	f.base = srv.URL
	f.registry = strings.TrimPrefix(srv.URL, "http://")
	f.hostsDir = t.TempDir()
	writeHostsTOML(t, f.hostsDir, f.registry, fmt.Sprintf("server = %q\n", f.base))
	remote, err := NewRemote(WithHostsDir(f.hostsDir), WithRetry(4, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	f.healer, err = NewHealer(f.cs, remote, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) setFault(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.fault = fn
	f.mu.Unlock()
}

func writeHostsTOML(t *testing.T, dir, registry, body string) {
	t.Helper()
	d := filepath.Join(dir, registry)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) heal(t *testing.T, repo string, o *imagetest.Object) (*Result, error) {
	t.Helper()
	return f.healer.Heal(context.Background(), Target{Registry: f.registry, Repository: repo, Root: o.Root()})
}

func (f *fixture) has(t *testing.T, repo, kind string, b imagetest.Blob) bool {
	t.Helper()
	return imagetest.Has(t, f.base, repo, kind, b.Desc.Digest.String())
}

var (
	amd64 = imagetest.Platform("linux", "amd64")
	arm64 = imagetest.Platform("linux", "arm64")
)
