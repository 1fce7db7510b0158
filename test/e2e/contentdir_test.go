package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCorruptLocalBlobNeverPushed: a byte flipped in a layer in
// containerd's content store. `regmend heal` never uploads it nor the
// manifest above it and names the digest; under `regmend serve` the failed
// heal counts in regmend_local_data_loss_total. Both read paths: the blob
// file read from containerd's content directory (the default, found
// through containerd's introspection), and through containerd's API
// (--content-dir none).
func TestCorruptLocalBlobNeverPushed(t *testing.T) {
	for _, tc := range []struct {
		path  string
		flags []string
	}{
		{"directory", nil},
		{"api", []string{"--content-dir", "none"}},
	} {
		t.Run(tc.path, func(t *testing.T) { corruptLocalBlobNeverPushed(t, tc.path, tc.flags) })
	}
}

// readsDirectly is what regmend logs (at debug) when it reads blobs from
// containerd's content directory.
const readsDirectly = "reading blobs from containerd's content directory"

func corruptLocalBlobNeverPushed(t *testing.T, path string, flags []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	bad := s.img.Layers[1]
	file := contentPath(s.nodeA, bad)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("layer file: %v", err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(file, b, 0o444); err != nil {
		t.Fatal(err)
	}
	before := len(s.reg.Requests())
	node := nodeSnapshot(ctx, t, s.nodeA)
	out, code := regmend(ctx, t, s.nodeA, append(append([]string{"--log-level", "debug"}, flags...), "heal", s.reg.Ref("app@"+s.d1.String()))...)
	assertNodeUnchanged(ctx, t, s.nodeA, node)
	if code == 0 || code == 2 {
		t.Fatalf("heal of a corrupt layer exit %d, want a failure:\n%s", code, out)
	}
	if direct := strings.Contains(out, readsDirectly); direct != (path == "directory") {
		t.Errorf("heal read from the content directory: %v, want %v:\n%s", direct, path == "directory", out)
	}
	if !strings.Contains(out, bad.String()) || !strings.Contains(out, "does not match") {
		t.Errorf("heal output does not name the corrupt digest %s:\n%s", bad, out)
	}
	if committed := committedUploads(s.reg.Requests()[before:]); committed[bad.String()] != 0 {
		t.Error("the corrupt layer was committed to the registry")
	}
	if s.reg.BlobExists("app", bad) || s.reg.ManifestExists("app", s.d1) {
		t.Error("the corrupt layer or the manifest above it is in the registry")
	}

	srv := startServe(t, s.nodeA, s.reg, flags...)
	useMirror(ctx, t, s.nodeA, s.reg, srv)
	mustPull(ctx, t, s.nodeA, s.reg.Ref("app@"+s.d1.String())) // served; the heal behind it fails
	waitFor(t, 30*time.Second, "regmend_local_data_loss_total counts the corrupt layer", func() bool {
		return srv.Metric(t, "regmend_local_data_loss_total") >= 1
	})
	if direct := strings.Contains(srv.Proc.Log(), readsDirectly); direct != (path == "directory") {
		t.Errorf("serve read from the content directory: %v, want %v", direct, path == "directory")
	}
	if s.reg.BlobExists("app", bad) || s.reg.ManifestExists("app", s.d1) {
		t.Error("serve pushed the corrupt layer or the manifest above it")
	}
	if !strings.Contains(srv.Proc.Log(), bad.String()) {
		t.Error("serve's log does not name the corrupt digest")
	}
	assertRegistryIntact(t, s.reg, "app")
}

// TestHealFallsBackToAPIWithoutContentDir: a content directory this
// process cannot read (here: absent) is no error: `regmend heal` says so
// at info and heals through containerd's API.
func TestHealFallsBackToAPIWithoutContentDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	gone := filepath.Join(t.TempDir(), "no-such-content-dir")
	out, code := regmend(ctx, t, s.nodeA, "--log-level", "debug", "--content-dir", gone, "heal", s.reg.Ref("app@"+s.d1.String()))
	if code != 0 {
		t.Fatalf("heal with an absent content directory exit %d, want 0:\n%s", code, out)
	}
	if strings.Contains(out, readsDirectly) || !strings.Contains(out, "reading blobs through containerd's API") || !strings.Contains(out, gone) {
		t.Errorf("heal does not say it reads through the API, and why:\n%s", out)
	}
	assertHealed(t, s)
}
