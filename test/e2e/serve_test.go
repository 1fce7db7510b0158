package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/test/e2e/harness"
)

// TestServeHealsOnPull: with regmend listed after the registry in
// hosts.toml, a CRI pull of a reaped digest the node holds succeeds with no
// manual step, and the registry is healed in the background so a fresh node
// pulls it too.
func TestServeHealsOnPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	srv := startServe(t, s.nodeA, s.reg)
	useMirror(ctx, t, s.nodeA, s.reg, srv)
	ref := s.pullHealsThroughMirror(ctx, t)
	fresh := harness.StartContainerd(t, harness.ContainerdOptions{Name: "fresh"})
	fresh.UseRegistry(s.reg)
	mustPull(ctx, t, fresh, ref)

	// A healthy pull never reaches regmend.
	served := srv.Metric(t, "regmend_mirror_requests_total")
	mustPull(ctx, t, s.nodeA, s.reg.Ref("app:v1"))
	if after := srv.Metric(t, "regmend_mirror_requests_total"); after != served {
		t.Errorf("a healthy pull reached regmend: mirror requests %v -> %v", served, after)
	}
	if n := srv.Metric(t, "regmend_heals_total", `result="healed"`); n < 1 {
		t.Errorf("regmend_heals_total{result=healed} = %v, want at least 1", n)
	}

	// Through ctr (the transfer service) too: a second orphan.
	d2 := reapAnother(ctx, t, s, "other")
	out, err := s.nodeA.Ctr(ctx, "images", "pull", "--hosts-dir", s.nodeA.HostsDir(), s.reg.Ref("other@"+d2.String()))
	if err != nil {
		t.Fatalf("ctr images pull of a reaped digest through regmend: %v\n%s", err, out)
	}
	// Wait for the whole heal, retention tag included: a tag PUT still in
	// flight when regmend stops would bring back the manifest deleted below.
	waitFor(t, 30*time.Second, "registry healed after the ctr pull", func() bool {
		d, ok := s.reg.TagDigest("other", "sha256-"+d2.Encoded()+".regmend")
		return ok && d == d2
	})

	// With regmend stopped, a pull of a reaped digest fails quickly with
	// "not found", exactly as without regmend.
	srv.Proc.Stop()
	s.reg.DeleteManifest("other", d2)
	start := time.Now()
	mustFailPull(ctx, t, s.nodeA, s.reg.Ref("other@"+d2.String()))
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("pull with regmend down took %s; it must fail fast", took)
	}
}

// useMirror lists regmend after the registry in the node's hosts.toml with
// `regmend hosts`, as an operator would.
func useMirror(ctx context.Context, t *testing.T, node *harness.Containerd, reg *harness.Registry, srv *server) {
	t.Helper()
	out, code := regmend(ctx, t, node, "hosts", reg.Addr(), "--mirror", srv.Mirror, "--containerd-config", node.ConfigPath())
	if code != 0 || !strings.Contains(out, "updated") {
		t.Fatalf("regmend hosts exit %d, want 0 and the file updated:\n%s", code, out)
	}
	if strings.Contains(out, "warning") {
		t.Errorf("regmend hosts warned about the test node's containerd config:\n%s", out)
	}
	out, code = regmend(ctx, t, node, "hosts", reg.Addr(), "--mirror", srv.Mirror, "--containerd-config", node.ConfigPath())
	if code != 0 || !strings.Contains(out, "already right") {
		t.Fatalf("second regmend hosts exit %d, want 0 and no change:\n%s", code, out)
	}
}

// reapAnother makes a second orphan on node A in repo: pulled, tag moved,
// garbage collected.
func reapAnother(ctx context.Context, t *testing.T, s *orphanScenario, repo string) digest.Digest {
	t.Helper()
	img := harness.PushImage(ctx, t, s.reg.Ref(repo+":v1"), harness.ImageSpec{Layers: 1, LayerSize: 4096})
	mustPull(ctx, t, s.nodeA, s.reg.Ref(repo+":v1"))
	harness.PushImage(ctx, t, s.reg.Ref(repo+":v1"), harness.ImageSpec{Layers: 1, LayerSize: 4096})
	s.reg.GarbageCollect()
	if s.reg.ManifestExists(repo, img.Digest) {
		t.Fatalf("GC kept %s", img.Digest)
	}
	if !strings.HasPrefix(img.Digest.String(), "sha256:") {
		t.Fatalf("digest %s", img.Digest)
	}
	return img.Digest
}
