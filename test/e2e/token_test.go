package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestServeMirrorToken: with the mirror token configured (issue 14), a CRI
// pull of a reaped orphan is still served and healed, because containerd
// sends the header hosts.toml gives it; a plain GET without the header, or
// with a wrong one, gets 404 and none of the content; hosts.toml and the
// token file are mode 0600. After `hosts` writes a new token, serve follows
// the file without a restart: pulls (CRI and ctr) still succeed and the old
// token is refused. `hosts --remove` then gives back the original hosts.toml.
func TestServeMirrorToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	hostsPath := filepath.Join(s.nodeA.HostsDir(), s.reg.Addr(), "hosts.toml")
	original := readFile(t, hostsPath)
	tokenFile := filepath.Join(t.TempDir(), "regmend", "mirror-token")
	srv := startServe(t, s.nodeA, s.reg, "--mirror-token-file", tokenFile) // creates the file
	if log := srv.Proc.Log(); strings.Contains(log, "open to every local process") || !strings.Contains(log, "only requests that carry the mirror token") {
		t.Errorf("serve with a token did not say the mirror requires it:\n%s", log)
	}
	oldToken := useMirrorWithToken(ctx, t, s, srv, tokenFile)

	s.pullHealsThroughMirror(ctx, t)
	manifest, _, ok := s.reg.GetManifest("app", s.d1.String())
	if !ok {
		t.Fatal("healed manifest not in the registry")
	}
	for _, p := range []string{hostsPath, tokenFile} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", p, st.Mode().Perm(), err)
		}
	}

	// Any other local process: no header, a wrong one.
	manifestURL := srv.Mirror + "/v2/app/manifests/" + s.d1.String() + "?ns=" + s.reg.Addr()
	layerURL := srv.Mirror + "/v2/app/blobs/" + s.img.Layers[0].String() + "?ns=" + s.reg.Addr()
	refusedBefore := srv.Metric(t, "regmend_mirror_refused_total")
	for _, tok := range []string{"", strings.Repeat("0", 64), oldToken[:63]} {
		for _, u := range []string{manifestURL, layerURL} {
			code, body := mirrorGet(t, http.MethodGet, u, tok)
			if code != http.StatusNotFound || !strings.Contains(body, `"errors"`) || len(body) > 200 || bytes.Contains([]byte(body), manifest) {
				t.Errorf("GET %s with token %q: %d, %d bytes %q; want the 404 of a miss and none of the content", u, tok, code, len(body), body)
			}
		}
		if code, _ := mirrorGet(t, http.MethodHead, manifestURL, tok); code != http.StatusNotFound {
			t.Errorf("HEAD with token %q: %d, want 404", tok, code)
		}
	}
	if n := srv.Metric(t, "regmend_mirror_refused_total") - refusedBefore; n != 9 {
		t.Errorf("regmend_mirror_refused_total rose by %v, want 9", n)
	}
	if code, body := mirrorGet(t, http.MethodGet, manifestURL, oldToken); code != http.StatusOK || body != string(manifest) {
		t.Errorf("GET with the token: %d, want 200 and the manifest", code)
	}

	// Rotation: a new token file, hosts again; serve follows without a restart.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	newToken := useMirrorWithToken(ctx, t, s, srv, tokenFile)
	if newToken == oldToken || strings.Contains(readFile(t, hostsPath), oldToken) {
		t.Fatal("hosts did not rotate the token in hosts.toml")
	}
	d2 := reapAnother(ctx, t, s, "other")
	mustPull(ctx, t, s.nodeA, s.reg.Ref("other@"+d2.String()))
	waitFor(t, 30*time.Second, "registry healed after the pull with the new token", func() bool {
		d, ok := s.reg.TagDigest("other", "sha256-"+d2.Encoded()+".regmend")
		return ok && d == d2
	})
	// ctr (the transfer service) sends the header too.
	d3 := reapAnother(ctx, t, s, "third")
	if out, err := s.nodeA.Ctr(ctx, "images", "pull", "--hosts-dir", s.nodeA.HostsDir(), s.reg.Ref("third@"+d3.String())); err != nil {
		t.Fatalf("ctr images pull of a reaped digest through the token-guarded mirror: %v\n%s", err, out)
	}
	if code, _ := mirrorGet(t, http.MethodGet, manifestURL, oldToken); code != http.StatusNotFound {
		t.Errorf("the old token after rotation: %d, want 404", code)
	}
	if code, _ := mirrorGet(t, http.MethodGet, manifestURL, newToken); code != http.StatusOK {
		t.Errorf("the new token after rotation: %d, want 200", code)
	}

	// Uninstall gives back the file as it was before regmend.
	if out, code := regmend(ctx, t, s.nodeA, "hosts", "--remove", s.reg.Addr(), "--mirror", srv.Mirror); code != 0 {
		t.Fatalf("hosts --remove exit %d:\n%s", code, out)
	}
	if got := readFile(t, hostsPath); got != original {
		t.Errorf("hosts.toml after --remove:\n%s\nwant the original:\n%s", got, original)
	}
}

// TestCompatContainerd1xMirrorToken: containerd 1.6/1.7 also sends the
// per-host header from hosts.toml, so the token-guarded mirror serves its
// CRI pull of a reaped orphan, while a request without the token gets 404.
func TestCompatContainerd1xMirrorToken(t *testing.T) {
	bin := requireContainerd1x(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := reapOrphanOn(ctx, t, harness.RegistryOptions{}, harness.ContainerdOptions{Name: "containerd-1x", Binary: bin, ConfigVersion: 2})
	tokenFile := filepath.Join(t.TempDir(), "mirror-token")
	srv := startServe(t, s.nodeA, s.reg, "--mirror-token-file", tokenFile)
	useMirrorWithToken(ctx, t, s, srv, tokenFile)
	s.pullHealsThroughMirror(ctx, t)
	if code, body := mirrorGet(t, http.MethodGet, srv.Mirror+"/v2/app/manifests/"+s.d1.String()+"?ns="+s.reg.Addr(), ""); code != http.StatusNotFound || len(body) > 200 {
		t.Errorf("GET without the token: %d %q, want 404 and no content", code, body)
	}
	if n := srv.Metric(t, "regmend_mirror_refused_total"); n != 1 {
		t.Errorf("regmend_mirror_refused_total = %v, want 1 (containerd's own requests carry the token)", n)
	}
}

// TestPluginMirrorToken: the plugin's section takes mirror_token_file, so
// regmend inside containerd serves containerd's own CRI pull (which carries
// the token from hosts.toml) and refuses a request without it.
func TestPluginMirrorToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := harness.ProductBinary(t, "containerd-regmend")
	s := reapOrphan(ctx, t)
	tokenFile := filepath.Join(t.TempDir(), "mirror-token")
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	s.nodeA.Stop()
	appendConfig(t, s.nodeA, pluginSection(addrFile, s.reg, s.nodeA.HostsDir(), fmt.Sprintf("mirror_token_file = %q", tokenFile)))
	srv := startContainerdRegmend(t, s.nodeA, bin, addrFile)
	useMirrorWithToken(ctx, t, s, srv, tokenFile)
	s.pullHealsThroughMirror(ctx, t)
	if code, body := mirrorGet(t, http.MethodGet, srv.Mirror+"/v2/app/manifests/"+s.d1.String()+"?ns="+s.reg.Addr(), ""); code != http.StatusNotFound || len(body) > 200 {
		t.Errorf("GET without the token: %d %q, want 404 and no content", code, body)
	}
}

// useMirrorWithToken runs `regmend hosts --mirror-token-file` (which creates
// the token file if it is absent) and returns the token it wrote.
func useMirrorWithToken(ctx context.Context, t *testing.T, s *orphanScenario, srv *server, tokenFile string) string {
	t.Helper()
	out, code := regmend(ctx, t, s.nodeA, "hosts", s.reg.Addr(), "--mirror", srv.Mirror,
		"--mirror-token-file", tokenFile, "--containerd-config", s.nodeA.ConfigPath())
	if code != 0 || !strings.Contains(out, "updated") {
		t.Fatalf("regmend hosts --mirror-token-file exit %d, want 0 and the file updated:\n%s", code, out)
	}
	tok := strings.TrimSpace(readFile(t, tokenFile))
	if strings.Contains(out, tok) {
		t.Errorf("regmend hosts printed the token:\n%s", out)
	}
	hosts := readFile(t, filepath.Join(s.nodeA.HostsDir(), s.reg.Addr(), "hosts.toml"))
	if !strings.Contains(hosts, `"`+daemon.MirrorTokenHeader+`" = ["`+tok+`"]`) {
		t.Fatalf("hosts.toml does not carry the token header:\n%s", strings.ReplaceAll(hosts, tok, "<token>"))
	}
	return tok
}

// mirrorGet sends one request to the mirror as any local process could,
// with the token header when tok is set.
func mirrorGet(t *testing.T, method, url, tok string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set(daemon.MirrorTokenHeader, tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
