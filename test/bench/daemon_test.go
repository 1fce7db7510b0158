package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regmend/regmend/test/e2e/harness"
)

// Rows of the heals the node agent runs in the background.
const (
	serveName  = "regmend serve (queue)"
	pluginName = "containerd-regmend (plugin)"
)

// serveTool heals root through a fresh `regmend serve` per run (its queue
// skips a digest healed a moment ago): a HEAD of root through the mirror,
// as containerd sends after the registry's 404, queues the heal. The time
// is the heal's own, as the daemon's regmend_heal_duration_seconds records
// it: the queue first waits for the repository to go quiet (300 ms) on
// purpose, and serve's start is not a heal's cost.
func serveTool(ctx context.Context, t *testing.T, node *harness.Containerd, reg *harness.Registry, repo, root string) tool {
	return tool{serveName, func() run {
		srv := harness.StartServe(t, harness.ServeSpec{Node: node, Registry: reg.Addr(), LogLevel: "info"})
		defer srv.Proc.Stop()
		defer func() {
			if t.Failed() {
				t.Log(srv.Proc.Log())
			}
		}()
		c0 := cpuTime(srv.Proc.Pid())
		r := daemonHeal(ctx, t, srv.Mirror, srv.Metrics, reg, repo, root)
		r.cpu = cpuTime(srv.Proc.Pid()) - c0
		return r
	}}
}

// pluginNode starts containerd-regmend with regmend's section for reg,
// on port 0 with an addr file; plugin is where its addresses are read.
func pluginNode(t *testing.T, reg *harness.Registry) (node *harness.Containerd, plugin *harness.Server, addrFile string) {
	bin := harness.ProductBinary(t, "containerd-regmend")
	node = harness.StartContainerd(t, harness.ContainerdOptions{Binary: bin, Name: "plugin-node", LogLevel: "info"})
	node.UseRegistry(reg)
	addrFile = filepath.Join(t.TempDir(), "addrs.json")
	node.Stop()
	section := fmt.Sprintf("[plugins.\"io.containerd.server.v1.regmend\"]\n  listen = \"127.0.0.1:0\"\n  metrics_listen = \"127.0.0.1:0\"\n  addr_file = %q\n  registries = [%q]\n  hosts_dir = %q\n  sweep_interval = \"0s\"\n",
		addrFile, reg.Addr(), node.HostsDir())
	f, err := os.OpenFile(node.ConfigPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n" + section)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	plugin = &harness.Server{}
	startPlugin(t, node, plugin, addrFile)
	// containerd collects garbage just after it starts: an image loaded
	// meanwhile could lose a layer written before its manifest.
	settle(pidOf(t, node.ConfigPath()))
	return node, plugin, addrFile
}

// startPlugin (re)starts node and reads the plugin's new addresses into
// plugin (port 0 binds another port each start).
func startPlugin(t *testing.T, node *harness.Containerd, plugin *harness.Server, addrFile string) {
	t.Helper()
	os.Remove(addrFile) // a containerd killed at stop leaves the last one
	node.Start()
	plugin.Proc = node.Proc()
	plugin.SetAddrs(harness.ReadAddrFile(t, plugin.Proc, addrFile, 30*time.Second))
}

// pluginTool heals root through containerd-regmend's built-in agent,
// restarted each run for a fresh queue, once containerd's CPU settles.
// The time is the heal's own, as for serveTool.
func pluginTool(ctx context.Context, t *testing.T, node *harness.Containerd, plugin *harness.Server, addrFile string, reg *harness.Registry, repo, root string) tool {
	return tool{pluginName, func() run {
		node.Stop()
		startPlugin(t, node, plugin, addrFile)
		pid := pidOf(t, node.ConfigPath())
		settle(pid)
		c0 := cpuTime(pid)
		r := daemonHeal(ctx, t, plugin.Mirror, plugin.Metrics, reg, repo, root)
		r.cpu = cpuTime(pid) - c0
		return r
	}}
}

// daemonHeal asks mirror for root as containerd would after the registry's
// 404, waits for the heal it queues, and returns its duration as the
// daemon measured it.
func daemonHeal(ctx context.Context, t *testing.T, mirror, metrics string, reg *harness.Registry, repo, root string) run {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, mirror+"/v2/"+repo+"/manifests/"+root+"?ns="+reg.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "*/*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mirror HEAD: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mirror HEAD %s: %s", root, resp.Status)
	}
	// The daemon observes the duration, then counts the heal by result.
	deadline := time.Now().Add(60 * time.Second)
	for harness.ScrapeMetric(t, metrics+"/metrics", "regmend_heals_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("daemon heal: no heal recorded within 60 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := harness.ScrapeMetric(t, metrics+"/metrics", "regmend_heals_total", `result="healed"`); n != 1 {
		t.Fatalf("daemon heal: regmend_heals_total{result=healed} = %v, want 1", n)
	}
	sum, _ := histogram(t, metrics+"/metrics", "regmend_heal_duration_seconds")
	return run{took: time.Duration(sum * float64(time.Second))}
}

// histogram returns the sum and count of histogram name at url.
func histogram(t *testing.T, url, name string) (float64, uint64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics from %s: %v", url, err)
	}
	var sum float64
	var count uint64
	for _, m := range families[name].GetMetric() {
		sum += m.GetHistogram().GetSampleSum()
		count += m.GetHistogram().GetSampleCount()
	}
	return sum, count
}
