package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

// debianContainerd is containerd 1.6 as Debian ships it (package
// containerd), with a config in format version 2.
const debianContainerd = "/usr/bin/containerd"

// requireContainerd1x returns debianContainerd if it is containerd 1.6 or
// 1.7. Otherwise the test fails when $CI is set (.ci/run installs it) and is
// skipped loudly elsewhere.
func requireContainerd1x(t *testing.T) string {
	t.Helper()
	harness.RequireE2E(t)
	out, err := exec.Command(debianContainerd, "--version").CombinedOutput()
	why := ""
	if err != nil {
		why = err.Error()
	} else if f := strings.Fields(string(out)); len(f) < 3 ||
		!(strings.HasPrefix(strings.TrimPrefix(f[2], "v"), "1.6.") || strings.HasPrefix(strings.TrimPrefix(f[2], "v"), "1.7.")) {
		why = "it is not containerd 1.6/1.7: " + strings.TrimSpace(string(out))
	}
	if why == "" {
		t.Logf("%s", strings.TrimSpace(string(out)))
		return debianContainerd
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("e2e: %s: %s (.ci/run installs Debian's containerd 1.6; CI must not skip e2e)", debianContainerd, why)
	}
	t.Skipf("SKIPPING containerd 1.6/1.7 compatibility: %s: %s — apt-get install containerd to run it", debianContainerd, why)
	return ""
}

// TestCompatContainerd1xServeHealsOnPull is TestServeHealsOnPull's orphan
// story on containerd 1.6/1.7 with a version 2 config (docs/architecture.md §2): CRI
// reads hosts.toml from [plugins."io.containerd.grpc.v1.cri".registry]
// config_path, falls through the registry's 404 to regmend, and the pull of
// a reaped digest the node holds succeeds while the registry is healed.
func TestCompatContainerd1xServeHealsOnPull(t *testing.T) {
	bin := requireContainerd1x(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	s := reapOrphanOn(ctx, t, harness.RegistryOptions{}, harness.ContainerdOptions{Name: "containerd-1x", Binary: bin, ConfigVersion: 2})
	// Without regmend, containerd 1.x fails the pull as not found.
	mustFailPull(ctx, t, s.nodeA, s.reg.Ref("app@"+s.d1.String()))

	srv := startServe(t, s.nodeA, s.reg)
	useMirror(ctx, t, s.nodeA, s.reg, srv)
	s.pullHealsThroughMirror(ctx, t)
	if n := srv.Metric(t, "regmend_heals_total", `result="healed"`); n < 1 {
		t.Errorf("regmend_heals_total{result=healed} = %v, want at least 1", n)
	}

	// A healthy pull never reaches regmend.
	served := srv.Metric(t, "regmend_mirror_requests_total")
	mustPull(ctx, t, s.nodeA, s.reg.Ref("app:v1"))
	if after := srv.Metric(t, "regmend_mirror_requests_total"); after != served {
		t.Errorf("a healthy pull reached regmend: mirror requests %v -> %v", served, after)
	}
}
