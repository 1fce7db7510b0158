package kube

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/internal/imagebuild"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestChartOnACluster installs the chart as the README says on a one-node
// cluster, heals an orphan a new pod pulls by digest, reads regmend's
// Events on the Node, denies a digest deleted on purpose through the chart's
// ConfigMap (it stays gone), and runs the README's uninstall: hosts.toml is
// as it was, bytes and mode, the moment helm returns.
func TestChartOnACluster(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(harness.BinDir(), "image")
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		t.Fatalf("no image layout at %s: make test-kube runs make image first", layout)
	}
	helm := harness.Tool(t, "helm")
	// containerd starts shims from its PATH, the shim runs runc from its own.
	harness.Tool(t, "containerd-shim-runc-v2")
	t.Setenv("PATH", strings.Join([]string{harness.ToolsDir(), os.Getenv("PATH"), "/usr/sbin"}, string(os.PathListSeparator)))
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("runc not found: .ci/run installs Debian's runc")
	}

	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	sleeper := sleeperLayer(t)
	pause := pushRunnable(ctx, t, reg.Ref("pause:1"), runnable(t, sleeper, 1))
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node", ExtraConfig: nodeConfig(t, pause.Ref)})
	node.UseRegistry(reg)
	c := startCluster(t, node)
	t.Logf("cluster up: node %s Ready %s after start", nodeName, time.Since(start).Round(time.Millisecond))

	// 1. The image, then helm install as the README says, with this node's
	// paths and the ports reserved for it.
	idx, err := imagebuild.ReadLayout(layout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imagebuild.Push(ctx, idx, reg.Ref("regmend:v0.1.0"), true); err != nil {
		t.Fatal(err)
	}
	hostsFile := filepath.Join(node.HostsDir(), reg.Addr(), "hosts.toml")
	original, originalMode := readFile(t, hostsFile)
	kubeHelm := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, helm, args...)
		home := t.TempDir()
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig, "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	c.dumpPodLogsOnFailure(t, "kube-system")
	chart := filepath.Join(root, "deploy", "helm", "regmend")
	metricsPort := harness.ReservePort(t)
	installed := time.Now()
	out, err := kubeHelm("install", "regmend", chart, "-n", "kube-system",
		"--set", "registries={"+reg.Addr()+"}",
		"--set", "image.repository="+reg.Addr()+"/regmend", "--set", "image.tag=v0.1.0",
		"--set", "containerd.socket="+node.Socket(), "--set", "containerd.hostsDir="+node.HostsDir(),
		"--set", "containerd.config="+node.ConfigPath(),
		"--set", "containerd.contentDir="+filepath.Join(node.Dir(), "root", "io.containerd.content.v1.content"),
		"--set", "mirror.port="+strconv.Itoa(harness.ReservePort(t)),
		"--set", "metrics.port="+strconv.Itoa(metricsPort),
		"--set", "cluster.port="+strconv.Itoa(harness.ReservePort(t)),
		"--set", "mirrorToken.hostDir="+t.TempDir(),
		"--set", "events.apiServer.host=127.0.0.1", "--set", "events.apiServer.port="+strconv.Itoa(c.apiPort))
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}

	// 2. The DaemonSet Ready (kubectl rollout status).
	c.waitDaemonSetReady(t, ctx, "kube-system", "regmend")
	t.Logf("DaemonSet Ready %s after helm install", time.Since(installed).Round(time.Millisecond))
	if now, _ := readFile(t, hostsFile); bytes.Equal(now, original) {
		t.Fatalf("hosts.toml unchanged after install: regmend is not listed\n%s", now)
	}

	// 3. The orphan: a pod runs app@D1; app:v1 moves to an index; GC reaps D1.
	d1 := pushRunnable(ctx, t, reg.Ref("app:v1"), runnable(t, sleeper, 2))
	byDigest := reg.Ref("app@" + d1.Digest.String())
	c.runPod(t, ctx, "app-first", byDigest)
	harness.PushIndex(ctx, t, reg.Ref("app:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, "linux/s390x"}})
	reg.GarbageCollect()
	if reg.ManifestExists("app", d1.Digest) {
		t.Fatalf("registry still holds D1 %s after GC: no orphan", d1.Digest)
	}
	// A new pod on D1 pulls (Always) through the registry's 404 to regmend.
	pulled := time.Now()
	c.runPod(t, ctx, "app-after-gc", byDigest)
	t.Logf("new pod on the reaped digest Running %s after it was created", time.Since(pulled).Round(time.Millisecond))
	err = harness.WaitFor(time.Minute, nil, "the registry healed", func() error {
		if !reg.ManifestExists("app", d1.Digest) {
			return fmt.Errorf("registry lacks D1 %s", d1.Digest)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range c.waitEvents(t, ctx, daemon.ReasonServed, daemon.ReasonHealed) {
		t.Logf("event on Node %s: %s %s (count %d): %s", nodeName, ev.Type, ev.Reason, ev.Count, ev.Message)
	}

	// 4. An image deleted on purpose, denied with helm upgrade, stays gone.
	denyThroughChart(ctx, t, c, reg, sleeper, func(args ...string) (string, error) {
		return kubeHelm(append([]string{"upgrade", "regmend", chart, "-n", "kube-system", "--reuse-values"}, args...)...)
	}, metricsPort)

	// 5. The README's uninstall; the moment it returns, hosts.toml is back.
	out, err = kubeHelm("uninstall", "regmend", "-n", "kube-system", "--cascade", "foreground", "--wait")
	now, nowMode := readFile(t, hostsFile)
	if err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	if !bytes.Equal(now, original) {
		t.Errorf("hosts.toml when helm uninstall returned:\n%s\nwant, as before install:\n%s", now, original)
	}
	if nowMode != originalMode {
		t.Errorf("hosts.toml mode %04o when helm uninstall returned, want %04o as before install", nowMode, originalMode)
	}
	t.Logf("whole run %s", time.Since(start).Round(time.Millisecond))
}

// nodeConfig is containerd's config beyond the harness's: the sandbox
// (pause) image from the test registry; a CNI config so CRI reports its
// network ready and the node becomes Ready (every pod is on the host
// network, so no CNI plugin ever runs); and OOM score adjustments no lower
// than containerd's own, as this machine grants no CAP_SYS_RESOURCE (runc
// fails every sandbox, at -998, and critical pods, at -997, otherwise).
func nodeConfig(t *testing.T, pause string) string {
	t.Helper()
	cni := t.TempDir()
	conf := `{"cniVersion": "1.0.0", "name": "regmend-test", "plugins": [{"type": "loopback"}]}`
	if err := os.WriteFile(filepath.Join(cni, "10-regmend-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %q

[plugins."io.containerd.cri.v1.runtime".cni]
  conf_dir = %q
  bin_dirs = [%q]
`, pause, cni, t.TempDir())
}

func readFile(t *testing.T, path string) ([]byte, os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, st.Mode().Perm()
}

func (c *cluster) waitDaemonSetReady(t *testing.T, ctx context.Context, ns, name string) {
	t.Helper()
	err := harness.WaitFor(5*time.Minute, nil, "DaemonSet "+name+" Ready", func() error {
		ds, err := c.client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := ds.Status
		if s.ObservedGeneration < ds.Generation || s.DesiredNumberScheduled < 1 ||
			s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberReady != s.DesiredNumberScheduled {
			return fmt.Errorf("status %+v; pods: %s", s, c.podStates(ctx, ns))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runPod creates a host-network pod on image (pulled Always) and waits
// until it is Running.
func (c *cluster) runPod(t *testing.T, ctx context.Context, name, image string) {
	t.Helper()
	c.createPod(t, ctx, name, image)
	err := harness.WaitFor(3*time.Minute, nil, "pod "+name+" Running", func() error {
		p, err := c.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s: %s", p.Status.Phase, describe(p))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\nevents: %s", err, c.eventsOf(ctx, "default", name))
	}
}

// createPod creates a host-network pod on image, pulled Always.
func (c *cluster) createPod(t *testing.T, ctx context.Context, name, image string) {
	t.Helper()
	no := false
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			HostNetwork:                   true,
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}
	// The ServiceAccount admission needs the namespace's default
	// ServiceAccount, which the controller-manager creates.
	err := harness.WaitFor(2*time.Minute, nil, "pod "+name+" created", func() error {
		_, err := c.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitEvents waits until regmend posted an Event of every reason on the
// Node and returns regmend's events there.
func (c *cluster) waitEvents(t *testing.T, ctx context.Context, reasons ...string) []corev1.Event {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Node", "involvedObject.name": nodeName, "source": daemon.EventsComponent}.AsSelector().String()
	var evs []corev1.Event
	err := harness.WaitFor(time.Minute, nil, "regmend's Events on the Node", func() error {
		l, err := c.client.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		evs = l.Items
		seen := map[string]bool{}
		for _, e := range evs {
			seen[e.Reason] = true
		}
		for _, r := range reasons {
			if !seen[r] {
				return fmt.Errorf("no %s event; have %d: %v", r, len(evs), evs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (c *cluster) podStates(ctx context.Context, ns string) string {
	l, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range l.Items {
		fmt.Fprintf(&b, "%s %s %s; ", p.Name, p.Status.Phase, describe(&p))
	}
	return b.String()
}

func describe(p *corev1.Pod) string {
	var b strings.Builder
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case s.State.Waiting != nil:
			fmt.Fprintf(&b, "[%s waiting %s: %s]", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message)
		case s.State.Terminated != nil:
			fmt.Fprintf(&b, "[%s terminated %d %s]", s.Name, s.State.Terminated.ExitCode, s.State.Terminated.Reason)
		default:
			fmt.Fprintf(&b, "[%s running ready=%v]", s.Name, s.Ready)
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			fmt.Fprintf(&b, " %s: %s", cond.Type, cond.Message)
		}
	}
	return b.String()
}

func (c *cluster) eventsOf(ctx context.Context, ns, name string) string {
	l, err := c.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range l.Items {
		fmt.Fprintf(&b, "\n  %s %s: %s", e.Type, e.Reason, e.Message)
	}
	return b.String()
}
