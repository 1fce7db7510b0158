package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/regmend/regmend/internal/imagetest"
)

type noImages struct{}

func (noImages) List(context.Context, ...string) ([]images.Image, error) { return nil, nil }

// runDaemon runs a daemon on an empty content store with tokenFile as
// mirror_token_file, logging into logs, and returns the mirror's and the
// metrics' base URLs.
func runDaemon(t *testing.T, tokenFile string, logs io.Writer) (mirror, metrics string) {
	t.Helper()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Registries, cfg.Listen, cfg.MetricsListen, cfg.SweepInterval, cfg.HostsDir = []string{"edge:5000"}, "127.0.0.1:0", "127.0.0.1:0", 0, t.TempDir()
	cfg.MirrorTokenFile = tokenFile
	d, err := New(cfg, Stores{Content: store, Images: noImages{}})
	if err != nil {
		t.Fatal(err)
	}
	logger := logrus.New()
	logger.SetOutput(logs)
	ctx, cancel := context.WithCancel(log.WithLogger(context.Background(), logrus.NewEntry(logger)))
	ready, done := make(chan net.Addr, 1), make(chan error, 1)
	go func() { done <- d.Run(ctx, func(a net.Addr) { ready <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case a := <-ready:
		return "http://" + a.String(), "http://" + d.Addrs().Metrics
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not ready after 10s")
	}
	return "", ""
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set(MirrorTokenHeader, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMirrorToken: with a token file, the mirror answers only requests that
// carry its token; others get the 404 of a miss. A new token in the file
// takes effect without a restart.
func TestMirrorToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mirror-token")
	var logs imagetest.SyncBuffer
	mirror, metrics := runDaemon(t, file, &logs)
	for _, want := range []string{"created the mirror token file", "serves only requests that carry the mirror token"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("serve did not create the token file: %v", err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	tok := strings.TrimSpace(string(b))

	if code, body := get(t, mirror+"/v2/", tok); code != 200 || body != "{}\n" {
		t.Errorf("with the token: %d %q, want the mirror's answer", code, body)
	}
	for _, presented := range []string{"", strings.Repeat("0", 64), tok[:63]} {
		code, body := get(t, mirror+"/v2/", presented)
		if code != 404 || !strings.Contains(body, `"code":"NAME_UNKNOWN"`) {
			t.Errorf("token %q: %d %q, want 404 with an OCI error", presented, code, body)
		}
	}

	rotated := strings.Repeat("9", 64)
	if err := os.WriteFile(file+".new", []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, mirror+"/v2/", rotated); code != 200 {
		t.Errorf("the new token after rotation: %d, want 200", code)
	}
	if code, _ := get(t, mirror+"/v2/", tok); code != 404 {
		t.Errorf("the old token after rotation: %d, want 404", code)
	}

	_, m := get(t, metrics+"/metrics", "")
	for _, want := range []string{`regmend_mirror_refused_total{reason="missing"} 1`, `regmend_mirror_refused_total{reason="wrong"} 3`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestMirrorWithoutToken: without a token the mirror answers everyone, and
// the daemon says so at start.
func TestMirrorWithoutToken(t *testing.T) {
	var logs imagetest.SyncBuffer
	mirror, _ := runDaemon(t, "", &logs)
	if code, _ := get(t, mirror+"/v2/", ""); code != 200 {
		t.Errorf("without a token configured: %d, want 200", code)
	}
	if !strings.Contains(logs.String(), "open to every local process") || !strings.Contains(logs.String(), "level=warning") {
		t.Errorf("no warning that the mirror is open:\n%s", logs.String())
	}
}

func TestMirrorTokenFileBad(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mirror-token")
	os.WriteFile(file, []byte("too short\n"), 0o600)
	cfg := DefaultConfig()
	cfg.Registries, cfg.Listen, cfg.MetricsListen, cfg.MirrorTokenFile = []string{"edge:5000"}, "127.0.0.1:0", "", file
	store, _ := local.NewStore(t.TempDir())
	d, err := New(cfg, Stores{Content: store, Images: noImages{}})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background(), nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "mirror_token_file") || !strings.Contains(err.Error(), file) {
		t.Errorf("Run with a bad token file: %v, want an invalid-argument error naming the setting and the file", err)
	}
}
