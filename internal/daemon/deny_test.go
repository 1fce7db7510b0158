package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
)

// The daemon's mirror answers 404 for what deny_file names and serves it
// once the entry is lifted, with no restart; each refusal is on /metrics.
func TestDenyFile(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 64)
	imagetest.WriteLocal(t, cs, "edge:5000", "app", img)
	cfg := DefaultConfig()
	cfg.Registries, cfg.Listen, cfg.MetricsListen, cfg.SweepInterval, cfg.HostsDir = []string{"edge:5000"}, "127.0.0.1:0", "127.0.0.1:0", 0, t.TempDir()
	cfg.DenyFile = filepath.Join(t.TempDir(), "deny")

	if _, err := New(cfg, Stores{Content: cs, Images: noImages{}}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "deny_file") {
		t.Fatalf("a missing deny file: %v, want not found naming deny_file", err)
	}
	os.WriteFile(cfg.DenyFile, []byte("edge:5000/app:v1\n"), 0o644)
	if _, err := New(cfg, Stores{Content: cs, Images: noImages{}}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a bad deny file: %v, want invalid argument naming line 1", err)
	}
	os.WriteFile(cfg.DenyFile, []byte("# revoked\nedge:5000/app@"+img.Desc.Digest.String()+"\n"), 0o644)
	d, err := New(cfg, Stores{Content: cs, Images: noImages{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), "k8s.io"))
	ready, done := make(chan net.Addr, 1), make(chan error, 1)
	go func() { done <- d.Run(ctx, func(a net.Addr) { ready <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	var base string
	select {
	case a := <-ready:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	url := base + "/v2/app/manifests/" + img.Desc.Digest.String() + "?ns=edge:5000"
	if code, _ := get(t, url, ""); code != 404 {
		t.Fatalf("a denied manifest: %d, want 404", code)
	}
	if _, body := get(t, "http://"+d.Addrs().Metrics+"/metrics", ""); !strings.Contains(body, `regmend_denied_total{where="mirror"} 1`) {
		t.Errorf("/metrics does not count the refusal:\n%s", body)
	}
	os.WriteFile(cfg.DenyFile, []byte("# lifted\n"), 0o644)
	imagetest.WaitUntil(t, 10*time.Second, "the lifted entry served", func() bool {
		code, _ := get(t, url, "")
		return code == 200
	})
}
