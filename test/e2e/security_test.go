package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmend/regmend/test/e2e/harness"
)

// TestHealRejectsHostileReferences: path traversal, odd characters,
// unknown digest algorithms and malformed digests are usage errors (exit 2)
// before regmend talks to containerd or to any registry.
func TestHealRejectsHostileReferences(t *testing.T) {
	bin := harness.ProductBinary(t, "regmend")
	var hits atomic.Int64
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	hex := strings.Repeat("ab", 32)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct{ name, ref string }{
		{"traversal", host + "/../../etc/passwd@sha256:" + hex},
		{"dot segment", host + "/app/..@sha256:" + hex},
		{"encoded slash", host + "/app%2f..%2fx@sha256:" + hex},
		// containerd's reference.Parse cleans these to a/b and app;
		// regmend refuses a name that changes under cleaning.
		{"empty component", host + "/a//b@sha256:" + hex},
		{"current-directory segment", host + "/./app@sha256:" + hex},
		{"uppercase", host + "/App@sha256:" + hex},
		{"shell characters", host + "/app;rm$IFS-rf@sha256:" + hex},
		{"newline", host + "/app\n@sha256:" + hex},
		{"too long", host + "/" + strings.Repeat("a", 300) + "@sha256:" + hex},
		{"unknown algorithm", host + "/app@md5:d41d8cd98f00b204e9800998ecf8427e"},
		{"short digest", host + "/app@sha256:abc"},
		{"uppercase hex", host + "/app@sha256:" + strings.ToUpper(hex)},
		{"sha512 of the wrong length", host + "/app@sha512:" + hex},
		{"no registry", "app@sha256:" + hex},
		{"empty", ""},
		{"flag-like", "--registry=x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, bin, "-a", filepath.Join(t.TempDir(), "absent.sock"), "--hosts-dir", t.TempDir(), "heal", c.ref)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != 2 {
				t.Errorf("heal %q exit %d, want 2 (usage):\n%s", c.ref, code, out)
			}
			if strings.Contains(string(out), "panic") || strings.Contains(string(out), "goroutine ") {
				t.Errorf("heal %q panicked:\n%s", c.ref, out)
			}
		})
	}
	for _, args := range [][]string{
		{"heal", "--retain", "forever", host + "/app@sha256:" + hex},
		{"check", "--registry", "https://" + host},
		{"check", "--registry", host + "/path"},
		{"hosts", "../../etc"},
	} {
		cmd := exec.CommandContext(ctx, bin, append([]string{"-a", filepath.Join(t.TempDir(), "absent.sock"), "--hosts-dir", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("regmend %q: %v, want exit 2:\n%s", args, err, out)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests reached the registry", n)
	}
}

// TestServeRefusesHostileRequests: the running mirror says at start that
// it listens on loopback only; a registry outside the allow-list gets 404
// and nothing is fetched or pushed; traversal, odd names, unknown digest
// algorithms and writes are refused with 4xx, never 5xx. Listening beyond
// loopback is possible only when asked, and said loudly.
func TestServeRefusesHostileRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	srv := startServe(t, s.nodeA, s.reg)
	if !strings.Contains(srv.Proc.Log(), "regmend mirror listening (loopback only)") {
		t.Errorf("serve did not say it listens on loopback only:\n%s", srv.Proc.Log())
	}
	before := len(s.reg.Requests())
	d := s.d1.String()
	cases := []struct {
		name, method, path string
		status             int
	}{
		{"registry outside the allow-list", "GET", "/v2/app/manifests/" + d + "?ns=elsewhere.example:5000", 404},
		{"allowed name, other port", "GET", "/v2/app/manifests/" + d + "?ns=" + otherPort(t, s.reg.Addr()), 404},
		{"no ns", "GET", "/v2/app/manifests/" + d, 404},
		{"tag", "GET", "/v2/app/manifests/v1?ns=" + s.reg.Addr(), 404},
		{"traversal", "GET", "/v2/../../../etc/passwd/blobs/" + d + "?ns=" + s.reg.Addr(), 400},
		{"encoded traversal", "GET", "/v2/..%2f..%2fetc/blobs/" + d + "?ns=" + s.reg.Addr(), 400},
		{"odd characters", "GET", "/v2/app%00x/blobs/" + d + "?ns=" + s.reg.Addr(), 400},
		{"unknown algorithm", "GET", "/v2/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e?ns=" + s.reg.Addr(), 400},
		{"bad ns", "GET", "/v2/app/blobs/" + d + "?ns=a/../b", 400},
		{"another repository", "GET", "/v2/other/manifests/" + d + "?ns=" + s.reg.Addr(), 404},
		{"put", "PUT", "/v2/app/manifests/" + d + "?ns=" + s.reg.Addr(), 405},
		{"upload", "POST", "/v2/app/blobs/uploads/?ns=" + s.reg.Addr(), 405},
		{"delete", "DELETE", "/v2/app/manifests/" + d + "?ns=" + s.reg.Addr(), 405},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.Mirror+"/", nil)
		req.URL.Opaque = "//" + req.URL.Host + strings.SplitN(c.path, "?", 2)[0] // sent as written
		if q := strings.SplitN(c.path, "?", 2); len(q) == 2 {
			req.URL.RawQuery = q[1]
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: %s %s = %d, want %d", c.name, c.method, c.path, resp.StatusCode, c.status)
		}
	}
	// The mirror queues a heal only after it served content: every request
	// above must be counted as refused, none as served.
	if n := srv.Metric(t, "regmend_mirror_requests_total", `outcome="served"`); n != 0 {
		t.Errorf("refused requests: %v counted as served (each would queue a heal)", n)
	}
	if n := srv.Metric(t, "regmend_mirror_requests_total"); n != float64(len(cases)) {
		t.Errorf("mirror counted %v requests for the %d refused", n, len(cases))
	}
	if reqs := s.reg.Requests()[before:]; len(reqs) != 0 {
		t.Errorf("refused requests reached the registry: %v", reqs)
	}

	// Beyond loopback only when asked, and said.
	addr := "0.0.0.0:0"
	p := harness.StartProc(t, harness.ProcSpec{Name: "regmend-serve-wide", Path: harness.ProductBinary(t, "regmend"), Args: []string{
		"-a", s.nodeA.Socket(), "--hosts-dir", s.nodeA.HostsDir(), "serve", "--listen", addr, "--metrics-listen", "",
		"--registry", s.reg.Addr(), "--sweep-interval", "0",
	}})
	waitFor(t, 10*time.Second, "wide serve's log line", func() bool { return strings.Contains(p.Log(), "listening") })
	if !strings.Contains(p.Log(), "non-loopback") {
		t.Errorf("serve on %s did not warn that it listens beyond loopback:\n%s", addr, p.Log())
	}
}

// authRegistry is a real distribution registry behind htpasswd basic auth.
type authRegistry struct {
	addr, storage string
}

func startAuthRegistry(t *testing.T, user, password string) *authRegistry {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &authRegistry{storage: filepath.Join(dir, "storage")}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
  secret: regmend-e2e-secret
auth:
  htpasswd:
    realm: regmend-e2e
    path: %s
`, r.storage, htpasswd)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := harness.StartProc(t, harness.ProcSpec{Name: "auth-registry", Path: harness.Tool(t, harness.ToolRegistry), Args: []string{"serve", cfgPath}})
	if r.addr, err = harness.WaitListening(p, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(15*time.Second, p, "auth registry", func() error {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/ without credentials: %s, want 401", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *authRegistry) do(t *testing.T, method, path, user, password string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+r.addr+path, nil)
	req.SetBasicAuth(user, password)
	req.Header.Set("Accept", strings.Join(harness.ManifestAccept, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// authFile writes a docker config.json holding user:password for host.
func authFile(t *testing.T, host, user, password string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
	}}})
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCredentialsNeverInOutput: against a registry behind basic auth, with
// credentials in a docker config.json passed by --auth-file, neither the
// password nor the base64 form of the credentials appears in any output of
// `regmend heal` or in the debug log of `regmend serve`, whether the
// password is wrong or right.
func TestCredentialsNeverInOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const user, right, wrong = "regmend", "Right-s3cret-pw", "Wrong-s3cret-pw"
	reg := startAuthRegistry(t, user, right)
	img := harness.NewImage(t, harness.ImageSpec{Layers: 1, LayerSize: 4096})
	tag, _ := name.ParseReference(reg.addr+"/app:v1", name.Insecure)
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: user, Password: right})); err != nil {
		t.Fatalf("push: %v", err)
	}
	d1, _ := img.Digest()
	ref := reg.addr + "/app@" + d1.String()
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA"})
	node.WriteHostsTOML(reg.addr, harness.HostsTOML(reg.addr))
	if out, err := node.Crictl(ctx, "pull", "--creds", user+":"+right, ref); err != nil {
		t.Fatalf("node pull with credentials: %v\n%s", err, out)
	}
	reap := func() {
		if st := reg.do(t, http.MethodDelete, "/v2/app/manifests/"+d1.String(), user, right); st != http.StatusAccepted && st != http.StatusNotFound {
			t.Fatalf("delete manifest: %d", st)
		}
	}
	reap()
	secrets := []string{right, wrong}
	for _, pw := range []string{right, wrong} {
		secrets = append(secrets,
			base64.StdEncoding.EncodeToString([]byte(user+":"+pw)),
			base64.StdEncoding.EncodeToString([]byte(pw)),
			base64.URLEncoding.EncodeToString([]byte(user+":"+pw)))
	}
	leaks := func(where, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s contains the secret %q", where, s)
			}
		}
	}
	wrongAuth, rightAuth := authFile(t, reg.addr, user, wrong), authFile(t, reg.addr, user, right)

	// The registry's refusal, as regmend words it: the request it refused,
	// its status, and the class (not any text that happens to hold "401").
	refused := "registry " + reg.addr + "/app: is manifest " + d1.String() + " there: HEAD http://" + reg.addr + "/v2/app/manifests/" + d1.String() +
		": registry answered 401 Unauthorized: unauthorized"
	out, code := regmend(ctx, t, node, "--log-level", "debug", "--auth-file", wrongAuth, "heal", ref)
	if code != 1 || !strings.Contains(out, "regmend: "+refused) {
		t.Errorf("heal with a wrong password exit %d, want 1 and %q:\n%s", code, refused, out)
	}
	t.Logf("heal with a wrong password says: %s", strings.TrimSpace(out))
	leaks("heal output (wrong password)", out)
	out, code = regmend(ctx, t, node, "--auth-file", wrongAuth, "heal", "-o", "json", "--dry-run", ref)
	leaks("heal --dry-run -o json output (wrong password)", out)
	out, code = regmend(ctx, t, node, "--log-level", "debug", "--auth-file", rightAuth, "heal", ref)
	if code != 0 {
		t.Fatalf("heal with the right password exit %d:\n%s", code, out)
	}
	leaks("heal output (right password)", out)
	if st := reg.do(t, http.MethodHead, "/v2/app/manifests/"+d1.String(), user, right); st != http.StatusOK {
		t.Errorf("manifest not healed: %d", st)
	}

	// serve with debug logs: with the wrong password the heal behind a
	// mirror hit fails; with the right one it succeeds.
	for _, c := range []struct {
		name, auth, result string
	}{{"wrong password", wrongAuth, `result="failed"`}, {"right password", rightAuth, `result="healed"`}} {
		reap()
		srv := startServeFor(t, node, reg.addr, "--auth-file", c.auth)
		if out, code := regmend(ctx, t, node, "hosts", reg.addr, "--mirror", srv.Mirror, "--containerd-config", node.ConfigPath()); code != 0 {
			t.Fatalf("regmend hosts exit %d:\n%s", code, out)
		}
		if out, err := node.Crictl(ctx, "pull", "--creds", user+":"+right, ref); err != nil {
			t.Fatalf("%s: pull of the reaped digest through the mirror: %v\n%s", c.name, err, out)
		}
		waitFor(t, 30*time.Second, c.name+": heal "+c.result, func() bool { return srv.Metric(t, "regmend_heals_total", c.result) >= 1 })
		srv.Proc.Stop()
		log := srv.Proc.Log()
		if !strings.Contains(log, `"level":"debug"`) {
			t.Errorf("%s: serve logged nothing at debug", c.name)
		}
		if c.auth == wrongAuth && !slices.ContainsFunc(strings.Split(log, "\n"), func(l string) bool {
			return strings.Contains(l, `"msg":"heal failed"`) && strings.Contains(l, `"error":"`+refused+`"`)
		}) {
			t.Errorf("%s: serve's log does not say %q:\n%s", c.name, refused, log)
		}
		leaks("serve debug log ("+c.name+")", log)
	}
}

// startServeFor runs `regmend serve` with debug logs for the registry at
// addr against node.
func startServeFor(t *testing.T, node *harness.Containerd, addr string, extra ...string) *server {
	t.Helper()
	return harness.StartServe(t, harness.ServeSpec{Node: node, Registry: addr, Extra: extra})
}

// otherPort returns addr with another, valid, port.
func otherPort(t *testing.T, addr string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		t.Fatalf("address %q: want host:port", addr)
	}
	return net.JoinHostPort(host, strconv.Itoa(n%65535+1))
}

// TestHealNeverPushesContentFromAnotherRepository: content the node pulled
// from private/secret, named under public/app, is not pushed there by
// `regmend heal` or `check --fix` (with the node's credentials, its blobs
// mounted across from private/secret): both exit 1 saying the content did
// not come from public/app, and the registry sees no write.
func TestHealNeverPushesContentFromAnotherRepository(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA"})
	node.UseRegistry(reg)
	img := harness.PushImage(ctx, t, reg.Ref("private/secret:v1"), harness.ImageSpec{Layers: 1, LayerSize: 4096})
	mustPull(ctx, t, node, reg.Ref("private/secret@"+img.Digest.String()))
	before := len(reg.Requests())

	ref := reg.Ref("public/app@" + img.Digest.String())
	want := "did not come from " + reg.Addr() + "/public/app"
	for _, args := range [][]string{{"heal", ref}, {"check", "--fix", ref}} {
		out, code := regmend(ctx, t, node, args...)
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "private/secret") {
			t.Errorf("regmend %s: exit %d, want 1 and %q naming private/secret:\n%s", strings.Join(args, " "), code, want, out)
		}
	}
	if w := writes(reg.Requests()[before:]); len(w) != 0 {
		t.Errorf("the registry saw writes: %v", w)
	}
	if reg.ManifestExists("public/app", img.Digest) {
		t.Error("the private/secret manifest reached public/app")
	}
}
