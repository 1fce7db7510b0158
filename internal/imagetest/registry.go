package imagetest

import (
	"bytes"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/registry"
	"go.uber.org/goleak"
)

// Request is one request a Registry answered.
type Request struct {
	Method, Path string
	Status       int
}

// RequestLog records every request a registry answered, in order.
type RequestLog struct {
	mu   sync.Mutex
	reqs []Request
}

func (l *RequestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		l.mu.Lock()
		l.reqs = append(l.reqs, Request{r.Method, r.URL.Path, rec.status})
		l.mu.Unlock()
	})
}

// All returns the requests so far.
func (l *RequestLog) All() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Request(nil), l.reqs...)
}

// Reset forgets the requests so far.
func (l *RequestLog) Reset() {
	l.mu.Lock()
	l.reqs = nil
	l.mu.Unlock()
}

// Writes returns the requests that change the registry.
func (l *RequestLog) Writes() []Request {
	var out []Request
	for _, r := range l.All() {
		if r.Method != http.MethodHead && r.Method != http.MethodGet {
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

// Registry is go-containerregistry's in-memory registry on a loopback
// server that logs every request and may let a fault answer instead, with
// a hosts.toml directory that names it (plain HTTP).
type Registry struct {
	Base     string // http://127.0.0.1:port
	Host     string // 127.0.0.1:port
	HostsDir string
	Log      *RequestLog

	mu    sync.Mutex
	fault func(w http.ResponseWriter, r *http.Request) bool
}

// NewRegistry starts a Registry, stopped when the test ends.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{Log: &RequestLog{}}
	reg := registry.New(registry.Logger(stdlog.New(io.Discard, "", 0)))
	srv := httptest.NewServer(r.Log.wrap(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		fault := r.fault
		r.mu.Unlock()
		if fault != nil && fault(w, req) {
			return
		}
		reg.ServeHTTP(w, req)
	})))
	t.Cleanup(srv.Close)
	r.Base = srv.URL
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	r.HostsDir = t.TempDir()
	WriteHostsTOML(t, r.HostsDir, r.Host, fmt.Sprintf("server = %q\n", r.Base))
	return r
}

// SetFault lets fn answer requests first: when it returns true the
// registry does not see the request. nil removes the fault.
func (r *Registry) SetFault(fn func(w http.ResponseWriter, req *http.Request) bool) {
	r.mu.Lock()
	r.fault = fn
	r.mu.Unlock()
}

// WriteHostsTOML writes dir/registry/hosts.toml.
func WriteHostsTOML(t testing.TB, dir, registry, body string) {
	t.Helper()
	d := filepath.Join(dir, registry)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Orphan reproduces the field failure in reg: repo:v1 was a single
// manifest the node pulled (written to cs), the tag moved to an index, and
// GC reaped the manifest and its blobs. The request log starts afresh.
func Orphan(t testing.TB, cs ctrcontent.Store, reg *Registry, repo string, format Format) (m1, idx *Object) {
	t.Helper()
	amd64, arm64 := Platform("linux", "amd64"), Platform("linux", "arm64")
	m1 = Manifest(t, format, amd64, 3, 1024)
	Push(t, reg.Base, repo, "v1", m1)
	WriteLocal(t, cs, reg.Host, repo, m1)
	idx = Index(t, format, Manifest(t, format, amd64, 1, 64), Manifest(t, format, arm64, 1, 64))
	Push(t, reg.Base, repo, "v1", idx)
	Delete(t, reg.Base, repo, "manifests", m1.Desc.Digest)
	for _, b := range append(m1.Layers, *m1.Config) {
		Delete(t, reg.Base, repo, "blobs", b.Desc.Digest)
	}
	reg.Log.Reset()
	return m1, idx
}

// UploadDigest returns the digest a blob upload's final PUT commits, or "".
func UploadDigest(r *http.Request) string {
	if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/blobs/uploads/") {
		return ""
	}
	return r.URL.Query().Get("digest")
}

// WaitUntil polls cond every 20ms and fails the test if it is still false
// after d, naming what was awaited.
func WaitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Main runs a package's tests, then fails if any goroutine is left
// running (idle HTTP connections aside). containerd's local store warns
// that fsverity is unsupported in tmpfs; only errors are logged.
func Main(m *testing.M) {
	_ = log.SetLevel("error")
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"), goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

// SyncBuffer is a bytes.Buffer that goroutines may write into (a logger's
// output) while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
