package e2e

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/internal/imagebuild"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestImageRunsAsTheDaemonSet runs the image `make image` built the way the
// Helm chart's DaemonSet runs it, on the real containerd: pushed to the test
// registry, pulled through CRI, the rendered pod's init container
// (`regmend hosts`) and then its serve container started with `ctr run
// --net-host` and the chart's mounts. A CRI pull of a reaped orphan is served
// by the containerized regmend and the registry is healed. Stopping the pod
// runs its preStop hook, the uninstall path, after which hosts.toml is the
// original byte for byte.
func TestImageRunsAsTheDaemonSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	layout := imageLayout(t)
	helm := harness.Tool(t, "helm")
	// containerd starts shims from its PATH, the shim runs runc from its
	// own: the tools cache first, and Debian's runc in /usr/sbin even when
	// the caller's PATH lacks it.
	harness.Tool(t, "containerd-shim-runc-v2")
	t.Setenv("PATH", strings.Join([]string{harness.ToolsDir(), os.Getenv("PATH"), "/usr/sbin"}, string(os.PathListSeparator)))
	requireRunc(t)

	s := reapOrphan(ctx, t)
	node := s.nodeA
	idx, err := imagebuild.ReadLayout(layout)
	if err != nil {
		t.Fatal(err)
	}
	ref := s.reg.Ref("regmend:e2e")
	if _, err := imagebuild.Push(ctx, idx, ref, true); err != nil {
		t.Fatal(err)
	}
	inspectImage(ctx, t, ref)
	mustPull(ctx, t, node, ref) // as the kubelet does before it starts the pod

	hostsFile := filepath.Join(node.HostsDir(), s.reg.Addr(), "hosts.toml")
	original, err := os.ReadFile(hostsFile)
	if err != nil {
		t.Fatal(err)
	}
	mirrorPort, metricsPort := harness.ReservePort(t), harness.ReservePort(t)
	tokenDir := t.TempDir()
	spec, configMaps := renderPod(t, helm,
		"registries={"+s.reg.Addr()+"}",
		"image.repository="+s.reg.Addr()+"/regmend", "image.tag=e2e",
		"containerd.socket="+node.Socket(), "containerd.config="+node.ConfigPath(),
		"containerd.hostsDir="+node.HostsDir(), "containerd.namespace="+node.Namespace(),
		"containerd.contentDir="+filepath.Join(node.Dir(), "root", "io.containerd.content.v1.content"),
		"mirror.port="+strconv.Itoa(mirrorPort), "metrics.port="+strconv.Itoa(metricsPort),
		"sweepInterval=0", "logLevel=debug", "cluster.enabled=false",
		"mirrorToken.hostDir="+tokenDir)
	// NODE_NAME (Kubernetes Events) without an API server: events are off.
	fields := map[string]string{"status.hostIP": "127.0.0.1", "spec.nodeName": "e2e-node"}
	newPod := func() *harness.Pod {
		p := harness.NewPod(t, node, "regmend", spec, fields)
		for name, data := range configMaps {
			p.SetConfigMap(name, data)
		}
		return p
	}

	start := time.Now()
	pod := startPod(ctx, t, newPod(), hostsFile, mirrorPort, metricsPort)
	t.Logf("init container and serve up in %s", time.Since(start).Round(time.Millisecond))
	// The mirror token (on by default): created on the node and written
	// into hosts.toml, both readable by root only.
	tokenFile := filepath.Join(tokenDir, "mirror-token")
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{tokenFile, hostsFile} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: want mode 0600 (%v)", f, err)
		}
	}

	s.pullHealsThroughMirror(ctx, t)

	// Upgrade: the old pod stops (its preStop takes the entry out and
	// deletes the token file), the new one's init container puts the entry
	// back with a new token.
	stopPod(ctx, t, pod, hostsFile, original)
	if _, err := os.Stat(tokenFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mirror token file after preStop: %v, want it deleted", err)
	}
	pod = startPod(ctx, t, newPod(), hostsFile, mirrorPort, metricsPort)
	if again, err := os.ReadFile(tokenFile); err != nil || bytes.Equal(again, token) {
		t.Errorf("mirror token after a pod replacement: %v; want a new one", err)
	}
	d2 := reapAnother(ctx, t, s, "other")
	denyThroughConfigMap(ctx, t, pod, node, metricsPort, s.reg.Addr()+"/other", s.reg.Ref("other@"+d2.String()))
	mustPull(ctx, t, node, s.reg.Ref("other@"+d2.String()))
	waitFor(t, 30*time.Second, "registry healed after the upgrade", func() bool { return s.reg.ManifestExists("other", d2) })

	// Uninstall: the pod is deleted; hosts.toml is the original again, and
	// no token is left on the node.
	stopPod(ctx, t, pod, hostsFile, original)
	if _, err := os.Stat(tokenFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mirror token file after uninstall: %v, want it deleted", err)
	}
	checkNoMounts(t, node)
}

// startPod runs the pod's init container, checks that it listed the mirror
// in hosts.toml, then starts serve and waits for its /healthz.
func startPod(ctx context.Context, t *testing.T, pod *harness.Pod, hostsFile string, mirrorPort, metricsPort int) *harness.Pod {
	t.Helper()
	out, err := pod.RunInit(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "warning:") { // regmend's, not ctr's own
			t.Errorf("regmend hosts warned: %s\n%s", line, out)
		}
	}
	listed, _ := os.ReadFile(hostsFile)
	if !bytes.Contains(listed, []byte("http://127.0.0.1:"+strconv.Itoa(mirrorPort))) {
		t.Fatalf("after the init container, hosts.toml does not list the mirror:\n%s", listed)
	}
	if out, err := pod.Start(ctx); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitHealthy(t, metricsPort)
	return pod
}

// stopPod deletes the pod and checks that its preStop hook left hosts.toml
// exactly as it was before regmend.
func stopPod(ctx context.Context, t *testing.T, pod *harness.Pod, hostsFile string, original []byte) {
	t.Helper()
	out, err := pod.Stop(ctx, 15*time.Second)
	if err != nil {
		t.Fatalf("preStop hook: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(hostsFile)
	if !bytes.Equal(after, original) {
		t.Errorf("hosts.toml after the pod stopped differs from the original:\n--- original\n%s\n--- after\n%s", original, after)
	}
}

// imageLayout returns bin/image, built by `make image`: missing, the test is
// skipped, or failed in CI.
func imageLayout(t *testing.T) string {
	t.Helper()
	harness.RequireE2E(t)
	dir := filepath.Join(harness.BinDir(), "image")
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		return dir
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no image layout at %s: make test runs make image first", dir)
	}
	t.Skipf("SKIPPING: no image layout at %s; run make image", dir)
	return ""
}

func requireRunc(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("runc"); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("runc not found: .ci/run installs Debian's runc")
	}
	t.Skip("SKIPPING: runc not found (apt-get install runc)")
}

// denyThroughConfigMap updates the chart's deny list ConfigMap as the
// kubelet does (a ..data swap) to deny entry: the containerized serve
// follows it with no restart, and a pull of ref fails as without regmend;
// then the ConfigMap is emptied again and the entry lifted.
func denyThroughConfigMap(ctx context.Context, t *testing.T, pod *harness.Pod, node *harness.Containerd, metricsPort int, entry, ref string) {
	t.Helper()
	metrics := "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
	entries := func(n float64) func() bool {
		return func() bool { return harness.ScrapeMetric(t, metrics, "regmend_deny_entries") == n }
	}
	pod.UpdateConfigMap("regmend-deny", map[string]string{"deny.list": "# revoked\n" + entry + "\n"})
	waitFor(t, 10*time.Second, "the ConfigMap's deny entry in force", entries(1))
	mustFailPull(ctx, t, node, ref)
	if n := harness.ScrapeMetric(t, metrics, "regmend_denied_total", `where="mirror"`); n < 1 {
		t.Errorf("regmend_denied_total{where=mirror} = %v after a denied pull", n)
	}
	pod.UpdateConfigMap("regmend-deny", map[string]string{"deny.list": "# lifted\n"})
	waitFor(t, 10*time.Second, "the ConfigMap's deny entry lifted", entries(0))
}

// renderPod renders the chart with --set values and returns the
// DaemonSet's pod spec and the data of every ConfigMap it renders.
func renderPod(t *testing.T, helm string, set ...string) (harness.PodSpec, map[string]map[string]string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"template", "regmend", filepath.Join(root, "deploy", "helm", "regmend"), "--namespace", "kube-system"}
	for _, v := range set {
		args = append(args, "--set", v)
	}
	out, err := exec.Command(helm, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs, err := harness.ParseManifests(string(out))
	if err != nil {
		t.Fatal(err)
	}
	dss := harness.Objects(objs, "DaemonSet")
	if len(dss) != 1 {
		t.Fatalf("%d DaemonSets rendered", len(dss))
	}
	var ds harness.DaemonSet
	if err := dss[0].Decode(&ds); err != nil {
		t.Fatal(err)
	}
	configMaps := map[string]map[string]string{}
	for _, o := range harness.Objects(objs, "ConfigMap") {
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if err := o.Decode(&cm); err != nil {
			t.Fatal(err)
		}
		configMaps[o.Metadata.Name] = cm.Data
	}
	return ds.Spec.Template.Spec, configMaps
}

func waitHealthy(t *testing.T, port int) {
	t.Helper()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	waitFor(t, 20*time.Second, "containerized regmend "+url, func() bool {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// checkNoMounts fails when a container left a mount below the node's
// directory (snapshots, rootfs, binds).
func checkNoMounts(t *testing.T, node *harness.Containerd) {
	t.Helper()
	left, err := harness.MountsUnder(node.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("mounts left under %s: %q", node.Dir(), left)
	}
}
