package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

// TestPluginServesPeers: the containerd plugin takes the cluster keys of
// the same config: node A, running containerd-regmend with a peer endpoint,
// serves node C (plain `regmend serve`, holding nothing), whose CRI pull
// of the orphan succeeds; the registry is healed.
func TestPluginServesPeers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := harness.ProductBinary(t, "containerd-regmend")
	s := reapOrphan(ctx, t)
	tokenFile, _ := writePeerToken(t)
	// A and C name each other: both peer endpoints are opened first.
	lnA, lnC := harness.Listen(t), harness.Listen(t)
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	s.nodeA.Stop()
	appendConfig(t, s.nodeA, pluginSection(addrFile, s.reg, s.nodeA.HostsDir(), fmt.Sprintf(
		"peer_listen = %q\n  peer_token_file = %q\n  peers = [%q]", harness.FDSetting(0), tokenFile, lnC.URL())))
	srvA := startContainerdRegmend(t, s.nodeA, bin, addrFile, lnA)
	if log := s.nodeA.Log(); !strings.Contains(log, "regmend peer endpoint listening") {
		t.Fatalf("containerd log does not show regmend's peer endpoint")
	}

	nodeC := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeC"})
	nodeC.UseRegistry(s.reg)
	srvC := startPeerServe(t, nodeC, s.reg, lnC, tokenFile, []string{lnA.URL()})
	useMirror(ctx, t, nodeC, s.reg, srvC)
	mustPull(ctx, t, nodeC, s.reg.Ref("app@"+s.d1.String()))
	if n := srvA.Metric(t, "regmend_peer_bytes_total", `direction="to_peers"`); n < 2*64<<10 {
		t.Errorf("the plugin served %v bytes to peers, want at least the two layers", n)
	}
	waitRetained(t, s.reg, "app", s.d1, 60*time.Second)
}
