package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

// otherPlatform is a second platform for multi-arch indexes: one this machine
// does not pull.
func otherPlatform() string {
	if harness.HostPlatform == "linux/arm64" {
		return "linux/amd64"
	}
	return "linux/arm64"
}

// TestReproduceOrphanedDigest reproduces the first failure of docs/architecture.md §1
// without regmend: a digest a node holds is garbage-collected from the
// registry after its tag moves to an index, and every pull by that digest
// fails with "not found", even on the node that holds it.
func TestReproduceOrphanedDigest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	nodeA := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA"})
	nodeA.UseRegistry(reg)

	// (a) single-arch app:v1, pulled through CRI on node A.
	img := harness.PushImage(ctx, t, reg.Ref("app:v1"), harness.ImageSpec{Layers: 2, LayerSize: 4096})
	if out, err := nodeA.Pull(ctx, reg.Ref("app:v1")); err != nil {
		t.Fatalf("node A pull app:v1: %v", err)
	} else {
		t.Logf("node A: %s", strings.TrimSpace(out))
	}
	d1, ok := reg.TagDigest("app", "v1")
	if !ok || d1 != img.Digest {
		t.Fatalf("app:v1 = %q (ok=%v), want pushed %s", d1, ok, img.Digest)
	}
	for _, d := range append(img.Blobs(), d1) {
		if !nodeA.HasContent(ctx, d) {
			t.Fatalf("node A content store lacks %s after pull", d)
		}
	}

	// (b) the tag moves to a multi-arch index with a different host child.
	idx := harness.PushIndex(ctx, t, reg.Ref("app:v1"), harness.IndexSpec{
		Platforms: []string{harness.HostPlatform, otherPlatform()},
	})
	if got, _ := reg.TagDigest("app", "v1"); got != idx.Digest {
		t.Fatalf("app:v1 = %s after index push, want %s", got, idx.Digest)
	}
	if c := idx.Child(t, harness.HostPlatform); c.Digest == d1 {
		t.Fatalf("index host child equals D1; fixture is wrong")
	}

	// (c) real registry GC.
	gc := reg.GarbageCollect()
	t.Logf("garbage-collect: %d lines of output", strings.Count(gc, "\n"))

	// (d) D1 and its blobs are gone from the registry; node A still holds them.
	if reg.ManifestExists("app", d1) {
		t.Fatalf("registry still has manifest D1 %s after GC", d1)
	}
	for _, d := range img.Blobs() {
		if reg.BlobExists("app", d) {
			t.Errorf("registry still has blob %s of D1 after GC", d)
		}
	}
	for _, c := range idx.Children {
		if !reg.ManifestExists("app", c.Digest) {
			t.Errorf("GC removed index child %s (%s)", c.Digest, c.Platform.Architecture)
		}
	}
	before := len(reg.Requests())
	out, err := nodeA.Pull(ctx, reg.Ref("app@"+d1.String()))
	if err == nil {
		t.Fatalf("node A pull app@D1 succeeded after GC; want not found:\n%s", out)
	}
	if !strings.Contains(err.Error(), "not found") {
		t.Fatalf("node A pull app@D1: want \"not found\", got: %v", err)
	}
	t.Logf("node A pull by D1 fails as expected: %s", lastLine(err.Error()))
	if !nodeA.HasContent(ctx, d1) {
		t.Fatalf("node A content store lost D1")
	}
	if out, err := nodeA.Ctr(ctx, "content", "get", d1.String()); err != nil || !strings.Contains(out, "schemaVersion") {
		t.Fatalf("ctr content get D1 on node A: err=%v out=%q", err, out)
	}
	// The failed pull asked the registry for D1 by digest and got 404.
	var saw404 bool
	for _, q := range reg.Requests()[before:] {
		t.Logf("registry served: %s %s %d", q.Method, q.URI, q.Status)
		if q.URI == "/v2/app/manifests/"+d1.String() && q.Status == 404 {
			saw404 = true
		}
	}
	if !saw404 {
		t.Errorf("registry access log has no 404 for /v2/app/manifests/%s", d1)
	}

	// (e) a fresh node B fails the same way.
	nodeB := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeB"})
	nodeB.UseRegistry(reg)
	out, err = nodeB.Pull(ctx, reg.Ref("app@"+d1.String()))
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("node B pull app@D1: want \"not found\" error, got err=%v out=%q", err, out)
	}
	if nodeB.HasContent(ctx, d1) {
		t.Fatalf("node B has D1 without a successful pull")
	}
}

// TestReproduceDanglingIndexChild reproduces the second failure of docs/architecture.md
// §1: an index stays tagged but one child manifest is deleted. A node that
// already holds the child still pulls the tag; a fresh node cannot.
func TestReproduceDanglingIndexChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	idx := harness.PushIndex(ctx, t, reg.Ref("multi:v1"), harness.IndexSpec{
		Platforms: []string{harness.HostPlatform, otherPlatform()},
		Docker:    true, // Docker manifest list, to exercise both media type families
	})
	child := idx.Child(t, harness.HostPlatform)

	nodeA := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA"})
	nodeA.UseRegistry(reg)
	if _, err := nodeA.Pull(ctx, reg.Ref("multi:v1")); err != nil {
		t.Fatalf("node A pull multi:v1 before delete: %v", err)
	}
	if !nodeA.HasContent(ctx, child.Digest) {
		t.Fatalf("node A lacks host child %s after pull", child.Digest)
	}

	reg.DeleteManifest("multi", child.Digest)
	if reg.ManifestExists("multi", child.Digest) {
		t.Fatalf("child %s still present after DELETE", child.Digest)
	}
	if got, ok := reg.TagDigest("multi", "v1"); !ok || got != idx.Digest {
		t.Fatalf("multi:v1 = %q (ok=%v), want index %s still tagged", got, ok, idx.Digest)
	}

	// Node A holds the child: it never notices.
	if _, err := nodeA.Pull(ctx, reg.Ref("multi:v1")); err != nil {
		t.Fatalf("node A pull multi:v1 after delete (holds the child): %v", err)
	}

	nodeB := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeB"})
	nodeB.UseRegistry(reg)
	out, err := nodeB.Pull(ctx, reg.Ref("multi:v1"))
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("node B pull multi:v1: want \"not found\" error, got err=%v out=%q", err, out)
	}
	t.Logf("node B pull fails as expected: %s", lastLine(err.Error()))
}

// lastLine returns the last non-empty line of s: for a crictl failure, the
// message crictl printed.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
