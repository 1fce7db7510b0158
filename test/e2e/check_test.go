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

// TestCheckFindsAndFixesDamage: on a node holding an orphan, a dangling
// index child and a healthy image, `regmend check` names both damaged
// images without writing, `--fix` heals them, and a second check is clean.
func TestCheckFindsAndFixesDamage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t) // app@D1 orphaned; app:v1 is now an index
	multi := harness.PushIndex(ctx, t, s.reg.Ref("multi:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}})
	mustPull(ctx, t, s.nodeA, s.reg.Ref("multi:v1"))
	child := multi.Child(t, harness.HostPlatform)
	s.reg.DeleteManifest("multi", child.Digest)
	harness.PushImage(ctx, t, s.reg.Ref("healthy:v1"), harness.ImageSpec{Layers: 1, LayerSize: 1024})
	mustPull(ctx, t, s.nodeA, s.reg.Ref("healthy:v1"))

	before := len(s.reg.Requests())
	out, code := regmend(ctx, t, s.nodeA, "check", "--registry", s.reg.Addr())
	if code != 3 {
		t.Fatalf("check exit %d, want 3 (damage found):\n%s", code, out)
	}
	for _, want := range []string{"app@" + s.d1.String(), "multi", child.Digest.String()} {
		if !strings.Contains(out, want) {
			t.Errorf("check output does not name %s:\n%s", want, out)
		}
	}
	reqs := s.reg.Requests()[before:]
	if w := writes(reqs); len(w) != 0 {
		t.Fatalf("check wrote to the registry: %v", w)
	}
	t.Logf("one check of 3 images cost %d registry requests", len(reqs))

	out, _, code = runRegmend(ctx, t, s.nodeA, "check", "--registry", s.reg.Addr(), "-o", "json")
	var rep heal.CheckReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 3 {
		t.Fatalf("check -o json exit %d, err %v:\n%s", code, err, out)
	}
	states := map[string]heal.ImageState{}
	for _, img := range rep.Images {
		states[img.Target.Repository+"@"+img.Target.Root.Digest.String()] = img.State
	}
	if states["app@"+s.d1.String()] != heal.StateHealable || states["multi@"+multi.Digest.String()] != heal.StateHealable {
		t.Errorf("json states = %v, want the orphan and the index healable", states)
	}
	if rep.Counts["healable"] != 2 {
		t.Errorf("json counts = %v, want 2 healable", rep.Counts)
	}

	out, code = regmend(ctx, t, s.nodeA, "check", "--registry", s.reg.Addr(), "--fix")
	if code != 0 {
		t.Fatalf("check --fix exit %d, want 0:\n%s", code, out)
	}
	if !s.reg.ManifestExists("app", s.d1) || !s.reg.ManifestExists("multi", child.Digest) {
		t.Fatal("check --fix did not restore both images")
	}
	before = len(s.reg.Requests())
	out, code = regmend(ctx, t, s.nodeA, "check", "--registry", s.reg.Addr())
	if code != 0 {
		t.Fatalf("check after --fix exit %d, want 0:\n%s", code, out)
	}
	t.Logf("a clean check of %d images cost %d registry requests", len(rep.Images), len(s.reg.Requests())-before)
}

// TestSweepHealsDanglingChildWithoutPull: `regmend serve --sweep-interval`
// heals an index child the node holds, though nothing pulls it.
func TestSweepHealsDanglingChildWithoutPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node"})
	node.UseRegistry(reg)
	multi := harness.PushIndex(ctx, t, reg.Ref("multi:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}})
	mustPull(ctx, t, node, reg.Ref("multi:v1"))
	child := multi.Child(t, harness.HostPlatform)
	reg.DeleteManifest("multi", child.Digest)

	srv := startServe(t, node, reg, "--sweep-interval", "2s")
	waitFor(t, 30*time.Second, "sweep to restore the child", func() bool { return reg.ManifestExists("multi", child.Digest) })
	waitFor(t, 10*time.Second, "sweep metrics", func() bool {
		return srv.Metric(t, "regmend_last_sweep_timestamp_seconds") > 0 && srv.Metric(t, "regmend_images", `state="healthy"`) == 1
	})
	if got, _ := reg.TagDigest("multi", "v1"); got != multi.Digest {
		t.Errorf("multi:v1 moved to %s", got)
	}
}
