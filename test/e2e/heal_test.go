package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestHealOrphanEndToEnd: `regmend heal` restores a GC-reaped digest from
// the node's containerd, a fresh node pulls it through CRI, and the
// retention tag keeps it through a second GC.
func TestHealOrphanEndToEnd(t *testing.T) {
	for name, opts := range registryFlavours(t) {
		t.Run(name, func(t *testing.T) { healOrphanEndToEnd(t, opts) })
	}
}

func healOrphanEndToEnd(t *testing.T, opts harness.RegistryOptions) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphanOn(ctx, t, opts, harness.ContainerdOptions{Name: "nodeA"})
	ref := s.reg.Ref("app@" + s.d1.String())
	mustFailPull(ctx, t, s.nodeA, ref)

	out, code := regmend(ctx, t, s.nodeA, "inspect", ref)
	if code != 0 || !strings.Contains(out, "registry:missing") {
		t.Fatalf("inspect exit %d, want 0 with missing nodes:\n%s", code, out)
	}
	before := len(s.reg.Requests())
	out, code = regmend(ctx, t, s.nodeA, "heal", "--dry-run", ref)
	if code != 0 || !strings.Contains(out, "4 to push") {
		t.Fatalf("heal --dry-run exit %d, want 0 and a plan of 4 pushes (2 layers, config, manifest):\n%s", code, out)
	}
	if w := writes(s.reg.Requests()[before:]); len(w) != 0 {
		t.Fatalf("dry run wrote to the registry: %v", w)
	}

	out, _, code = runRegmend(ctx, t, s.nodeA, "heal", "-o", "json", ref)
	if code != 0 {
		t.Fatalf("heal exit %d:\n%s", code, out)
	}
	var results []heal.Result
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 {
		t.Fatalf("heal -o json is not one result (%v):\n%s", err, out)
	}
	tag := heal.RetentionTag(s.d1)
	if r := results[0]; r.Pushed != 4 || len(r.RetentionTags) != 1 || r.RetentionTags[0] != tag {
		t.Errorf("result pushed=%d tags=%v, want 4 and [%s]", r.Pushed, r.RetentionTags, tag)
	}
	assertHealed(t, s)
	if got, _ := s.reg.TagDigest("app", "v1"); got != s.idx.Digest {
		t.Errorf("app:v1 moved to %s; regmend must never move a tag", got)
	}

	mustPull(ctx, t, s.nodeA, ref)
	nodeB := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeB"})
	nodeB.UseRegistry(s.reg)
	mustPull(ctx, t, nodeB, ref)

	s.reg.GarbageCollect()
	if !s.reg.ManifestExists("app", s.d1) {
		t.Fatal("second GC reaped the healed digest: retention tag did not hold")
	}
	nodeC := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeC"})
	nodeC.UseRegistry(s.reg)
	mustPull(ctx, t, nodeC, ref)

	before = len(s.reg.Requests())
	out, code = regmend(ctx, t, s.nodeA, "heal", ref)
	if code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("second heal exit %d, want 0 and nothing to do:\n%s", code, out)
	}
	if w := writes(s.reg.Requests()[before:]); len(w) != 0 {
		t.Errorf("heal of a healthy registry wrote: %v", w)
	}
}

// TestHealDanglingChildEndToEnd: an index stays tagged but loses a child;
// healing by tag, or by the child's digest, restores only the child.
func TestHealDanglingChildEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	idx := harness.PushIndex(ctx, t, reg.Ref("multi:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}, Docker: true})
	child := idx.Child(t, harness.HostPlatform)
	nodeA := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA"})
	nodeA.UseRegistry(reg)
	mustPull(ctx, t, nodeA, reg.Ref("multi:v1"))

	for _, c := range []struct{ name, ref string }{
		{"by tag", reg.Ref("multi:v1")},
		{"by child digest", reg.Ref("multi@" + child.Digest.String())},
	} {
		ref := c.ref
		t.Run(c.name, func(t *testing.T) {
			reg.DeleteManifest("multi", child.Digest)
			fresh := harness.StartContainerd(t, harness.ContainerdOptions{Name: "fresh"})
			fresh.UseRegistry(reg)
			mustFailPull(ctx, t, fresh, reg.Ref("multi:v1"))

			before := len(reg.Requests())
			out, code := regmend(ctx, t, nodeA, "heal", ref)
			if code != 0 {
				t.Fatalf("heal %s exit %d:\n%s", ref, code, out)
			}
			w := writes(reg.Requests()[before:])
			if len(w) != 1 || !strings.HasSuffix(w[0], "/manifests/"+child.Digest.String()) {
				t.Errorf("writes = %v, want only the child manifest PUT", w)
			}
			if got, _ := reg.TagDigest("multi", "v1"); got != idx.Digest {
				t.Errorf("multi:v1 = %s, want the index %s", got, idx.Digest)
			}
			if strings.Contains(out, "retention tag") {
				t.Errorf("a child of a tagged index got a retention tag:\n%s", out)
			}
			mustPull(ctx, t, fresh, reg.Ref("multi:v1"))
		})
	}
}
