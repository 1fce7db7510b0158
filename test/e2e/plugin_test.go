package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

// TestPluginHealsOnPull: node A switches from stock containerd to
// containerd-regmend (same config.toml, content store and images, plus the
// plugin's section). With no `regmend serve` running, a CRI pull of a
// reaped digest the node holds succeeds, the registry is healed, and the
// plugin stops with containerd.
func TestPluginHealsOnPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := harness.ProductBinary(t, "containerd-regmend")
	s := reapOrphan(ctx, t)
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	s.nodeA.Stop()
	appendConfig(t, s.nodeA, pluginSection(addrFile, s.reg, s.nodeA.HostsDir(), ""))
	srv := startContainerdRegmend(t, s.nodeA, bin, addrFile)
	if log := s.nodeA.Log(); !strings.Contains(log, "regmend serving in containerd") {
		t.Fatalf("containerd log does not show regmend serving")
	}
	useMirror(ctx, t, s.nodeA, s.reg, srv)
	s.pullHealsThroughMirror(ctx, t)
	if n := srv.Metric(t, "regmend_mirror_requests_total"); n < 1 {
		t.Errorf("regmend_mirror_requests_total = %v: the pull did not reach the plugin's mirror", n)
	}
	if n := srv.Metric(t, "regmend_heals_total", `result="healed"`); n < 1 {
		t.Errorf("regmend_heals_total{result=healed} = %v, want at least 1", n)
	}

	// SIGTERM stops containerd and the plugin with it, within the grace.
	start := time.Now()
	if err := srv.Proc.Stop(); err != nil {
		t.Errorf("containerd-regmend with the plugin running: %v", err)
	}
	t.Logf("containerd-regmend stopped in %s", time.Since(start).Round(time.Millisecond))
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.Mirror, "http://"), time.Second); err == nil {
		c.Close()
		t.Errorf("regmend's mirror still listens after containerd stopped")
	}
}

// TestPluginConfigErrorKeepsContainerd: a bad setting in the plugin's
// section fails only the plugin. containerd logs the setting, runs on and
// pulls as before; regmend does not listen.
func TestPluginConfigErrorKeepsContainerd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := harness.ProductBinary(t, "containerd-regmend")
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	harness.PushImage(ctx, t, reg.Ref("healthy:v1"), harness.ImageSpec{Layers: 1, LayerSize: 4096})
	for _, tc := range []struct {
		name, extra string
		want        []string // in containerd's "failed to load plugin" line
	}{
		{"bad retain", `retain = "bogus"`, []string{`retain \"bogus\": want tag or none`}},
		// A wrong value type: containerd would refuse to start if it
		// decoded the section into the plugin's config type itself.
		{"bad duration", `sweep_interval = "1 hour"`, []string{"sweep_interval", "1 hour"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrFile := filepath.Join(t.TempDir(), "addrs.json")
			node := harness.StartContainerd(t, harness.ContainerdOptions{
				Binary: bin, Name: "containerd-regmend",
				ExtraConfig: pluginSection(addrFile, reg, "", tc.extra),
			})
			failed := pluginLogLine(node.Log(), "failed to load plugin")
			for _, w := range tc.want {
				if !strings.Contains(failed, w) {
					t.Errorf("containerd log: want the plugin's failed-to-load line to name %q, got %q", w, failed)
				}
			}
			// The plugin binds nothing: no addresses written, no listening line.
			if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
				t.Errorf("the plugin wrote its addresses despite the config error (%v)", err)
			}
			if l := pluginLogLine(node.Log(), "listening"); l != "" {
				t.Errorf("regmend listens despite the config error: %s", l)
			}
			node.UseRegistry(reg)
			mustPull(ctx, t, node, reg.Ref("healthy:v1"))
		})
	}
}

// pluginSection is the [plugins."io.containerd.server.v1.regmend"] table
// for reg on loopback port 0, writing the bound addresses to addrFile, the
// sweep off, and extra settings.
func pluginSection(addrFile string, reg *harness.Registry, hostsDir, extra string) string {
	var b strings.Builder
	b.WriteString("[plugins.\"io.containerd.server.v1.regmend\"]\n")
	b.WriteString("  listen = \"127.0.0.1:0\"\n  metrics_listen = \"127.0.0.1:0\"\n")
	fmt.Fprintf(&b, "  addr_file = %q\n", addrFile)
	fmt.Fprintf(&b, "  registries = [%q]\n", reg.Addr())
	if hostsDir != "" {
		fmt.Fprintf(&b, "  hosts_dir = %q\n", hostsDir)
	}
	if !strings.Contains(extra, "sweep_interval") {
		b.WriteString("  sweep_interval = \"0s\"\n")
	}
	if extra != "" {
		b.WriteString("  " + extra + "\n")
	}
	return b.String()
}

// appendConfig adds text to node's config.toml (the node must be stopped).
func appendConfig(t *testing.T, node *harness.Containerd, text string) {
	t.Helper()
	f, err := os.OpenFile(node.ConfigPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + text); err != nil {
		t.Fatal(err)
	}
}

// startContainerdRegmend runs bin with node's config.toml, state and
// sockets (its log appended to node's), handing it lns (fd://3, ...),
// reads the plugin's addresses from addrFile and waits until the plugin's
// /healthz and CRI answer.
func startContainerdRegmend(t *testing.T, node *harness.Containerd, bin, addrFile string, lns ...*harness.Listener) *server {
	t.Helper()
	p := harness.StartProc(t, harness.ProcSpec{
		Name: "containerd-regmend", Path: bin,
		Args: []string{"--config", node.ConfigPath()}, LogPath: node.LogPath(), Listeners: lns,
	})
	srv := &server{Proc: p}
	srv.SetAddrs(harness.ReadAddrFile(t, p, addrFile, 30*time.Second))
	srv.WaitHealthy(t, 10*time.Second)
	err := harness.WaitFor(30*time.Second, p, "containerd-regmend CRI", func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := node.Crictl(cctx, "info")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// pluginLogLine returns the last line of log that has msg and names the
// regmend plugin.
func pluginLogLine(log, msg string) string {
	var last string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, msg) && strings.Contains(l, "io.containerd.server.v1.regmend") {
			last = l
		}
	}
	return last
}
