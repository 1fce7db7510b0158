package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

// faultProxy is a reverse proxy on loopback in front of the real registry,
// which injects faults: a hook may answer a request itself (a status, a
// dropped connection), the proxy may be taken down so its port refuses
// connections, and uploads may be slowed down. Nodes reach the registry
// through it by a hosts.toml whose host entry is the proxy; image
// references keep the registry's own address, as containerd records them.
type faultProxy struct {
	t     *testing.T
	reg   *harness.Registry
	addr  string
	proxy *httputil.ReverseProxy

	mu    sync.Mutex
	fault func(w http.ResponseWriter, r *http.Request) bool
	srv   *http.Server
}

func startFaultProxy(t *testing.T, reg *harness.Registry) *faultProxy {
	t.Helper()
	u, _ := url.Parse(reg.URL())
	p := &faultProxy{t: t, reg: reg, proxy: httputil.NewSingleHostReverseProxy(u)} // keeps Host: upload locations come back here
	p.proxy.ErrorLog = nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

// URL is the proxy's base URL.
func (p *faultProxy) URL() string { return "http://" + p.addr }

func (p *faultProxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		fault := p.fault
		p.mu.Unlock()
		if fault != nil && fault(w, r) {
			return
		}
		p.proxy.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
}

// setFault installs fn; it answers a request by returning true.
func (p *faultProxy) setFault(fn func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.fault = fn
	p.mu.Unlock()
}

// down closes the listener and every connection: the port refuses.
func (p *faultProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		p.srv.Close()
		p.srv = nil
	}
}

// up listens again on the same address.
func (p *faultProxy) up() {
	p.t.Helper()
	var ln net.Listener
	err := harness.WaitFor(5*time.Second, nil, "proxy port free again", func() error {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err
	})
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

// useProxy writes node's hosts.toml for the registry: the proxy first
// (pull, resolve, push, so containerd's pulls and regmend's pushes both go
// through it), then any extra hosts (regmend's mirror).
func useProxy(node *harness.Containerd, reg *harness.Registry, p *faultProxy, extra ...string) {
	body := "server = \"" + p.URL() + "\"\n\n" + harness.HostEntry(p.URL(), "pull", "resolve", "push")
	for _, e := range extra {
		body += "\n" + e
	}
	node.WriteHostsTOML(reg.Addr(), body)
}

// isUploadStart, isUploadPut and isManifestPut classify registry writes.
func isUploadStart(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/")
}

func isUploadPut(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
}

func isManifestPut(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
}

// refuse answers status with a Retry-After and an OCI error body, after
// reading the request body as a registry would.
func refuse(w http.ResponseWriter, r *http.Request, status int, retryAfter string) {
	io.Copy(io.Discard, r.Body)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}`)
}

// hangUp reads n bytes of the request body, then closes the connection
// without an answer (hijacked), as a network failure mid-upload would.
func hangUp(t *testing.T, w http.ResponseWriter, r *http.Request, n int64) {
	io.CopyN(io.Discard, r.Body, n)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

// uploadDigest is the digest an upload's final PUT commits.
func uploadDigest(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	return u.Query().Get("digest")
}

// committedUploads counts, per digest, the blob uploads the registry
// committed (PUT to an upload location answered 201).
func committedUploads(reqs []harness.Request) map[string]int {
	out := map[string]int{}
	for _, r := range reqs {
		if r.Method == http.MethodPut && strings.Contains(r.URI, "/blobs/uploads/") && r.Status == http.StatusCreated {
			out[uploadDigest(r.URI)]++
		}
	}
	return out
}
