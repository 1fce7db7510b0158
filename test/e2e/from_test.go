package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/source/sourcetest"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestHealFromLayoutCLI: a distribution registry's garbage collection
// reaped an index's child; `regmend heal --from oci:DIR:v1`, on a machine
// with no containerd, restores it from an image layout and leaves v1 where
// it is. A second image's --tag v1 is refused (v1 names the first) until
// --force-tag moves it, and the next GC keeps what the tag names.
func TestHealFromLayoutCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := harness.StartRegistry(t, harness.RegistryOptions{Name: "edge"})
	hosts := t.TempDir()
	imagetest.WriteHostsTOML(t, hosts, reg.Addr(), fmt.Sprintf("server = %q\n", reg.URL()))
	idx := sourcetest.NewFixture(t, 64<<10).Image
	child := idx.Children[0]
	imagetest.Push(t, reg.URL(), "app", "v1", idx)
	layout := filepath.Join(t.TempDir(), "v1")
	sourcetest.WriteLayout(t, layout, idx, "v1")
	reg.DeleteManifest("app", child.Desc.Digest)
	reg.GarbageCollect()
	if reg.ManifestExists("app", child.Desc.Digest) || reg.BlobExists("app", child.Layers[0].Desc.Digest) {
		t.Fatal("GC kept the deleted child and its layers; the test reproduces nothing")
	}

	before := len(reg.Requests())
	out, code := regmendFrom(ctx, t, hosts, "heal", "--from", "oci:"+layout+":v1", "--tag", "v1", reg.Ref("app"))
	if code != 0 || !strings.Contains(out, "already points at "+idx.Desc.Digest.String()) {
		t.Fatalf("heal exit %d, want 0 and tag v1 left on the index:\n%s", code, out)
	}
	if !reg.ManifestExists("app", child.Desc.Digest) || !reg.BlobExists("app", child.Layers[0].Desc.Digest) {
		t.Fatal("child or its layer not restored")
	}
	for _, w := range writes(reg.Requests()[before:]) {
		if strings.Contains(w, "/manifests/v1") {
			t.Errorf("heal wrote tag v1 (%s), which already named the index", w)
		}
	}

	next := sourcetest.NewFixture(t, 1024).Image
	layout2 := filepath.Join(t.TempDir(), "v2")
	sourcetest.WriteLayout(t, layout2, next, "")
	out, code = regmendFrom(ctx, t, hosts, "heal", "--from", "oci:"+layout2, "--tag", "v1", reg.Ref("app"))
	if code != 1 || !strings.Contains(out, idx.Desc.Digest.String()) || !strings.Contains(out, "--force-tag") {
		t.Errorf("heal --tag v1 of another image: exit %d, want 1 naming %s and --force-tag:\n%s", code, idx.Desc.Digest, out)
	}
	if d, _ := reg.TagDigest("app", "v1"); d != idx.Desc.Digest {
		t.Fatalf("tag v1 = %s after a refusal, want %s", d, idx.Desc.Digest)
	}
	out, code = regmendFrom(ctx, t, hosts, "heal", "--from", "oci:"+layout2, "--tag", "v1", "--force-tag", reg.Ref("app"))
	if want := "moved from " + idx.Desc.Digest.String() + " to " + next.Desc.Digest.String(); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("heal --force-tag exit %d, want 0 and %q:\n%s", code, want, out)
	}
	reg.GarbageCollect()
	if d, _ := reg.TagDigest("app", "v1"); d != next.Desc.Digest || !reg.ManifestExists("app", next.Children[0].Desc.Digest) {
		t.Errorf("after GC: tag v1 = %s, want %s with its children kept", d, next.Desc.Digest)
	}
}

// regmendFrom runs the regmend binary with a containerd socket that does
// not exist (--from needs none) and returns its stdout and stderr.
func regmendFrom(ctx context.Context, t *testing.T, hostsDir string, args ...string) (string, int) {
	t.Helper()
	bin := harness.ProductBinary(t, "regmend")
	cmd := exec.CommandContext(ctx, bin, append([]string{"-a", "/nonexistent/containerd.sock", "--hosts-dir", hostsDir}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("run regmend %v: %v", args, err)
	}
	return string(out), 0
}
