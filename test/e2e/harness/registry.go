package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// HarnessUserAgent is the User-Agent of every HTTP request the harness itself
// sends (existence probes, fixture pushes). Registry.Requests leaves those out.
const HarnessUserAgent = "regmend-e2e-harness"

// ManifestAccept lists the manifest media types the harness accepts, OCI and
// Docker, single-arch and index.
var ManifestAccept = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// RegistryOptions configures StartRegistry. The zero value is valid.
type RegistryOptions struct {
	// Binary is the registry binary; default Tool(t, ToolRegistry).
	Binary string
	// Name labels the registry in logs; default "registry".
	Name string
	// ExtraConfig is appended to config.yml (top-level YAML keys not already
	// written by the harness).
	ExtraConfig string
}

// Registry is a distribution (v3) registry serving plain HTTP on a loopback
// port, with filesystem storage in a temporary directory and deletes enabled.
// Its address is a front the harness owns (see front): the registry itself
// binds port 0 on each start.
type Registry struct {
	t       testing.TB
	name    string
	binary  string
	front   *front
	dir     string
	config  string
	logPath string
	proc    *Proc
	client  *http.Client
	syncSeq atomic.Int64
}

// StartRegistry writes a config.yml and starts `registry serve` on loopback
// port 0, behind a front address of its own; it returns once GET /v2/
// answers. The registry is stopped on cleanup.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Tool(t, ToolRegistry)
	}
	if opts.Name == "" {
		opts.Name = "registry"
	}
	dir := t.TempDir()
	fr := startFront(t)
	r := &Registry{
		t:       t,
		name:    opts.Name,
		binary:  opts.Binary,
		front:   fr,
		dir:     dir,
		config:  filepath.Join(dir, "config.yml"),
		logPath: filepath.Join(dir, "registry.log"),
		client:  &http.Client{Timeout: 30 * time.Second},
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  secret: regmend-e2e-secret
%s`, filepath.Join(dir, "storage"), opts.ExtraConfig)
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatalf("write registry config: %v", err)
	}
	r.Start()
	return r
}

// Addr returns "127.0.0.1:PORT", the same across restarts.
func (r *Registry) Addr() string { return r.front.addr() }

// URL returns "http://127.0.0.1:PORT".
func (r *Registry) URL() string { return "http://" + r.Addr() }

// Ref returns the full reference of repoAndTag in this registry, e.g.
// Ref("app:v1") = "127.0.0.1:PORT/app:v1" and Ref("app@sha256:...").
func (r *Registry) Ref(repoAndTag string) string { return r.Addr() + "/" + repoAndTag }

// ConfigPath returns the path of the registry's config.yml.
func (r *Registry) ConfigPath() string { return r.config }

// StorageDir returns the filesystem storage root.
func (r *Registry) StorageDir() string { return filepath.Join(r.dir, "storage") }

// LogPath returns the registry log (all runs, and garbage-collect output).
func (r *Registry) LogPath() string { return r.logPath }

// Log returns the content of the registry log.
func (r *Registry) Log() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// Start (re)starts the registry with the same storage, behind the same
// address, and waits until it answers. It fails the test if the registry is
// already running.
func (r *Registry) Start() {
	r.t.Helper()
	if r.proc != nil && !r.proc.Exited() {
		r.t.Fatalf("%s: Start while running", r.name)
	}
	r.proc = StartProc(r.t, ProcSpec{
		Name:    r.name,
		Path:    r.binary,
		Args:    []string{"serve", r.config},
		LogPath: r.logPath,
	})
	backend, err := WaitListening(r.proc, 15*time.Second)
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", r.name, err, TailFile(r.logPath, 50))
	}
	r.front.setBackend(backend)
	err = WaitFor(15*time.Second, r.proc, r.name+" /v2/", func() error {
		resp, err := r.do(http.MethodGet, "/v2/", nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", r.name, err, TailFile(r.logPath, 50))
	}
}

// Stop stops the registry (storage is kept).
func (r *Registry) Stop() {
	r.t.Helper()
	if r.proc == nil {
		return
	}
	r.front.setBackend("")
	if err := r.proc.Stop(); err != nil {
		r.t.Logf("%s: %v", r.name, err)
	}
}

// GarbageCollect stops the registry, runs the real
// `registry garbage-collect --delete-untagged config.yml`, restarts the
// registry behind the same address and returns the command's output (also appended
// to the registry log).
func (r *Registry) GarbageCollect() string {
	r.t.Helper()
	r.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.binary, "garbage-collect", "--delete-untagged", r.config).CombinedOutput()
	if f, ferr := os.OpenFile(r.logPath, os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== harness: garbage-collect --delete-untagged (err=%v)\n%s", err, out)
		f.Close()
	}
	if err != nil {
		r.t.Fatalf("%s garbage-collect: %v\n%s", r.name, err, out)
	}
	r.Start()
	return string(out)
}

// ManifestExists reports whether HEAD /v2/<repo>/manifests/<dgst> answers 200
// (false on 404; any other answer fails the test).
func (r *Registry) ManifestExists(repo string, dgst digest.Digest) bool {
	r.t.Helper()
	return r.exists("/v2/" + repo + "/manifests/" + dgst.String())
}

// BlobExists reports whether HEAD /v2/<repo>/blobs/<dgst> answers 200.
func (r *Registry) BlobExists(repo string, dgst digest.Digest) bool {
	r.t.Helper()
	return r.exists("/v2/" + repo + "/blobs/" + dgst.String())
}

func (r *Registry) exists(path string) bool {
	r.t.Helper()
	resp, err := r.do(http.MethodHead, path, nil)
	if err != nil {
		r.t.Fatalf("HEAD %s: %v", path, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	r.t.Fatalf("HEAD %s: unexpected %s", path, resp.Status)
	return false
}

// TagDigest returns the digest the tag points at (Docker-Content-Digest of a
// HEAD accepting OCI and Docker manifest and index types), and false if the
// tag does not exist.
func (r *Registry) TagDigest(repo, tag string) (digest.Digest, bool) {
	r.t.Helper()
	path := "/v2/" + repo + "/manifests/" + tag
	resp, err := r.do(http.MethodHead, path, nil)
	if err != nil {
		r.t.Fatalf("HEAD %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", false
	}
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("HEAD %s: unexpected %s", path, resp.Status)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		r.t.Fatalf("HEAD %s: bad Docker-Content-Digest: %v", path, err)
	}
	return d, true
}

// GetManifest fetches a manifest by tag or digest and returns its bytes and
// Content-Type; ok is false on 404.
func (r *Registry) GetManifest(repo, reference string) (body []byte, mediaType string, ok bool) {
	r.t.Helper()
	path := "/v2/" + repo + "/manifests/" + reference
	resp, err := r.do(http.MethodGet, path, nil)
	if err != nil {
		r.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, "", false
	}
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("GET %s: unexpected %s: %s", path, resp.Status, body)
	}
	return body, resp.Header.Get("Content-Type"), true
}

// PutManifest uploads raw manifest bytes under a tag or digest and returns the
// digest the registry reports. Use it for hand-written manifests and indexes.
func (r *Registry) PutManifest(repo, reference, mediaType string, body []byte) digest.Digest {
	r.t.Helper()
	path := "/v2/" + repo + "/manifests/" + reference
	req, err := http.NewRequest(http.MethodPut, r.URL()+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatalf("PUT %s: %v", path, err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := r.send(req)
	if err != nil {
		r.t.Fatalf("PUT %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		r.t.Fatalf("PUT %s: unexpected %s: %s", path, resp.Status, msg)
	}
	return digest.Digest(resp.Header.Get("Docker-Content-Digest"))
}

// DeleteManifest deletes a manifest by digest (DELETE answers 202); it fails
// the test on any other answer.
func (r *Registry) DeleteManifest(repo string, dgst digest.Digest) {
	r.t.Helper()
	path := "/v2/" + repo + "/manifests/" + dgst.String()
	resp, err := r.do(http.MethodDelete, path, nil)
	if err != nil {
		r.t.Fatalf("DELETE %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(resp.Body)
		r.t.Fatalf("DELETE %s: unexpected %s: %s", path, resp.Status, msg)
	}
}

func (r *Registry) do(method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, r.URL()+path, body)
	if err != nil {
		return nil, err
	}
	return r.send(req)
}

func (r *Registry) send(req *http.Request) (*http.Response, error) {
	req.Header.Set("User-Agent", HarnessUserAgent)
	if req.Method == http.MethodHead || req.Method == http.MethodGet {
		req.Header.Set("Accept", strings.Join(ManifestAccept, ", "))
	}
	return r.client.Do(req)
}

// Request is one request the registry served, parsed from its access log.
type Request struct {
	Method    string // "HEAD", "GET", ...
	URI       string // path and query, e.g. "/v2/app/manifests/sha256:..."
	Status    int
	UserAgent string
}

// accessLine matches the combined-format access log lines of distribution.
var accessLine = regexp.MustCompile(`^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) \S+ "[^"]*" "([^"]*)"`)

// Requests returns, in log order, every request the registry has served since
// it was first started (restarts included), except the harness's own (those
// whose User-Agent starts with HarnessUserAgent). It first makes a marker
// request and waits until the marker is logged, so requests that completed
// before the call are included. Use len(Requests()) before and after a command
// to count what the command sent.
func (r *Registry) Requests() []Request {
	r.t.Helper()
	marker := fmt.Sprintf("/v2/?harness-sync=%d", r.syncSeq.Add(1))
	resp, err := r.do(http.MethodGet, marker, nil)
	if err != nil {
		r.t.Fatalf("%s: sync request: %v", r.name, err)
	}
	resp.Body.Close()
	var all []Request
	err = WaitFor(5*time.Second, nil, "access log marker", func() error {
		all = r.parseAccessLog()
		for i := len(all) - 1; i >= 0; i-- {
			if all[i].URI == marker {
				return nil
			}
		}
		return fmt.Errorf("%s not logged yet", marker)
	})
	if err != nil {
		r.t.Fatalf("%s: %v", r.name, err)
	}
	out := all[:0]
	for _, q := range all {
		if !strings.HasPrefix(q.UserAgent, HarnessUserAgent) {
			out = append(out, q)
		}
	}
	return out
}

func (r *Registry) parseAccessLog() []Request {
	f, err := os.Open(r.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var reqs []Request
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		m := accessLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		status, _ := strconv.Atoi(m[3])
		reqs = append(reqs, Request{Method: m[1], URI: m[2], Status: status, UserAgent: m[4]})
	}
	return reqs
}
