package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// orphanScenario is docs/architecture.md §1's first failure, reproduced for real: node
// A pulled app:v1 (D1), the tag moved to an index, and the registry's GC
// reaped D1 and its blobs.
type orphanScenario struct {
	reg   *harness.Registry
	nodeA *harness.Containerd
	img   harness.PushedImage
	idx   harness.PushedIndex
	d1    digest.Digest
}

func reapOrphan(ctx context.Context, t *testing.T) *orphanScenario {
	t.Helper()
	return reapOrphanOn(ctx, t, harness.RegistryOptions{}, harness.ContainerdOptions{Name: "nodeA"})
}

// reapOrphanOn is reapOrphan with the registry and node A started with
// the given options.
func reapOrphanOn(ctx context.Context, t *testing.T, reg harness.RegistryOptions, node harness.ContainerdOptions) *orphanScenario {
	t.Helper()
	s := &orphanScenario{reg: harness.StartRegistry(t, reg)}
	s.nodeA = harness.StartContainerd(t, node)
	s.nodeA.UseRegistry(s.reg)
	s.img = harness.PushImage(ctx, t, s.reg.Ref("app:v1"), harness.ImageSpec{Layers: 2, LayerSize: 64 << 10})
	s.d1 = s.img.Digest
	if _, err := s.nodeA.Pull(ctx, s.reg.Ref("app:v1")); err != nil {
		t.Fatalf("node A pull app:v1: %v", err)
	}
	s.idx = harness.PushIndex(ctx, t, s.reg.Ref("app:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}})
	s.reg.GarbageCollect()
	if s.reg.ManifestExists("app", s.d1) {
		t.Fatalf("GC kept D1 %s: the scenario did not reproduce", s.d1)
	}
	return s
}

// pullHealsThroughMirror pulls the reaped D1 on node A through CRI, which
// must succeed at once (regmend serves it), then waits until the registry
// holds D1 again: blobs, manifest and retention tag, with app:v1 unmoved.
// It returns D1's reference.
func (s *orphanScenario) pullHealsThroughMirror(ctx context.Context, t *testing.T) string {
	t.Helper()
	ref := s.reg.Ref("app@" + s.d1.String())
	start := time.Now()
	mustPull(ctx, t, s.nodeA, ref)
	t.Logf("CRI pull of the reaped digest through regmend: %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "registry healed", func() bool {
		d, ok := s.reg.TagDigest("app", heal.RetentionTag(s.d1))
		return ok && d == s.d1
	})
	assertHealed(t, s)
	return ref
}

// registryFlavours are the registries regmend is proven against:
// distribution v3 built from its module, and distribution 2.8 as Debian
// ships it (docker-registry, installed by .ci/run).
func registryFlavours(t *testing.T) map[string]harness.RegistryOptions {
	t.Helper()
	flavours := map[string]harness.RegistryOptions{"distribution-v3": {}}
	if bin, err := exec.LookPath("docker-registry"); err == nil {
		flavours["distribution-2.8"] = harness.RegistryOptions{Binary: bin, Name: "docker-registry"}
	} else if os.Getenv("CI") != "" {
		t.Fatalf("docker-registry (Debian's distribution 2.8) is not installed; .ci/run installs it")
	} else {
		t.Log("SKIPPING distribution 2.8: docker-registry not installed (apt-get install docker-registry)")
	}
	return flavours
}

// regmend runs the regmend binary against node, returning its stdout and
// stderr together, and its exit code.
func regmend(ctx context.Context, t *testing.T, node *harness.Containerd, args ...string) (string, int) {
	t.Helper()
	stdout, stderr, code := runRegmend(ctx, t, node, args...)
	return stdout + stderr, code
}

// runRegmend runs the regmend binary against node.
func runRegmend(ctx context.Context, t *testing.T, node *harness.Containerd, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := harness.ProductBinary(t, "regmend")
	full := append([]string{"-a", node.Socket(), "-n", node.Namespace(), "--hosts-dir", node.HostsDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return o.String(), e.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("run regmend %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// writes counts the requests in reqs that change the registry.
func writes(reqs []harness.Request) []string {
	var out []string
	for _, r := range reqs {
		if r.Method != "GET" && r.Method != "HEAD" {
			out = append(out, r.Method+" "+r.URI)
		}
	}
	return out
}

func mustPull(ctx context.Context, t *testing.T, node *harness.Containerd, ref string) {
	t.Helper()
	if out, err := node.Pull(ctx, ref); err != nil {
		t.Fatalf("pull %s: %v\n%s", ref, err, out)
	}
}

func mustFailPull(ctx context.Context, t *testing.T, node *harness.Containerd, ref string) {
	t.Helper()
	out, err := node.Pull(ctx, ref)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("pull %s: want a not found error, got err=%v out=%q", ref, err, out)
	}
}

// server is a running `regmend serve` (or containerd-regmend's mirror).
type server = harness.Server

// startServe runs `regmend serve` for reg against node, with extra flags.
func startServe(t *testing.T, node *harness.Containerd, reg *harness.Registry, extra ...string) *server {
	t.Helper()
	return harness.StartServe(t, harness.ServeSpec{Node: node, Registry: reg.Addr(), Extra: extra})
}

// waitFor polls cond for up to d.
var waitFor = imagetest.WaitUntil
