package deploy

import (
	"encoding/base64"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regmend/regmend/test/e2e/harness"
)

const registry = "edge:5000"

func TestChartLints(t *testing.T) {
	for name, args := range map[string][]string{
		"defaults":        {"--set", "registries={" + registry + "}"},
		"non-default":     {"-f", filepath.Join(repo(t), "test", "deploy", "testdata", "non-default.yaml")},
		"plain manifests": {"-f", filepath.Join(repo(t), "deploy", "manifests", "values.yaml")},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runHelm(t, append([]string{"lint", "--strict", chartDir(t)}, args...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
		})
	}
}

func TestChartRequiresRegistries(t *testing.T) {
	out, err := runHelm(t, "template", "regmend", chartDir(t))
	if err == nil || !strings.Contains(err.Error(), "set registries") {
		t.Fatalf("rendering without registries: err=%v, want it to ask for registries\n%s", err, out)
	}
	_, err = runHelm(t, "template", "regmend", chartDir(t), "--set", "registries={edge/app}")
	if err == nil || !strings.Contains(err.Error(), "not host[:port]") {
		t.Fatalf("a registry with a path: err=%v, want it refused", err)
	}
}

// TestChartDefaults renders the chart as a user installs it (one registry,
// everything else default): a host-network DaemonSet that writes hosts.toml
// in an init container, serves with the mirror token, runs in cluster mode,
// and takes its entry out again in a preStop hook.
func TestChartDefaults(t *testing.T) {
	objs := parse(t, template(t, "--set", "registries={"+registry+"}"))
	ds, p := pod(t, objs)
	serve := serveContainer(t, p)

	if !p.HostNetwork {
		t.Error("hostNetwork is false: containerd could not reach the mirror on the node's loopback")
	}
	if p.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", p.PriorityClassName)
	}
	if len(p.Tolerations) != 1 || p.Tolerations[0]["operator"] != "Exists" || len(p.Tolerations[0]) != 1 {
		t.Errorf("tolerations %v, want every taint tolerated", p.Tolerations)
	}
	if serve.Resources.Requests["cpu"] == "" || serve.Resources.Requests["memory"] == "" || serve.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v, want requests and a memory limit", serve.Resources)
	}
	for name, pr := range map[string]*harness.Probe{"liveness": serve.LivenessProbe, "readiness": serve.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" || pr.HTTPGet.Port != 5051 || pr.HTTPGet.Host != "127.0.0.1" {
			t.Errorf("%s probe %+v, want GET 127.0.0.1:5051/healthz (metrics on loopback)", name, pr)
		}
	}
	if got := ds.Spec.Selector.MatchLabels; !subset(got, ds.Spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not select the pod's labels %v", got, ds.Spec.Template.Metadata.Labels)
	}

	// The socket's directory, read-only, and the hosts dir, read-write, at
	// the node's own paths.
	m, v := hostMount(t, p, serve, "/run/containerd")
	if m.MountPath != "/run/containerd" || !m.ReadOnly || v.HostPath.Type != "Directory" {
		t.Errorf("containerd socket dir: mount %+v volume %+v", m, *v.HostPath)
	}
	if a, _ := argValue(serve.Args, "--address"); a != "/run/containerd/containerd.sock" {
		t.Errorf("serve --address %q", a)
	}
	m, _ = hostMount(t, p, serve, "/etc/containerd/certs.d")
	if m.MountPath != "/etc/containerd/certs.d" || m.ReadOnly {
		t.Errorf("hosts dir mount %+v, want read-write at the same path", m)
	}
	// containerd's content directory, read-only at the same path, named to
	// serve so that it reads blob files rather than over the API.
	const contentDir = "/var/lib/containerd/io.containerd.content.v1.content"
	m, v = hostMount(t, p, serve, contentDir)
	if m.MountPath != contentDir || !m.ReadOnly || v.HostPath.Type != "Directory" {
		t.Errorf("content dir: mount %+v volume %+v, want read-only at the same path", m, *v.HostPath)
	}
	if a, _ := argValue(serve.Args, "--content-dir"); a != contentDir {
		t.Errorf("serve --content-dir %q, want %q", a, contentDir)
	}

	// One init container for the registry, against the host's hosts dir.
	if len(p.InitContainers) != 1 {
		t.Fatalf("%d init containers, want 1", len(p.InitContainers))
	}
	init := p.InitContainers[0]
	want := []string{"hosts", registry, "--hosts-dir", "/etc/containerd/certs.d", "--mirror", "http://127.0.0.1:5050",
		"--containerd-config", "/etc/containerd/config.toml", "--mirror-token-file", "/etc/regmend/mirror-token"}
	if !slices.Equal(init.Args, want) {
		t.Errorf("init args\n got %q\nwant %q", init.Args, want)
	}
	if init.Image != serve.Image || !strings.HasSuffix(init.Image, ":0.1.0") {
		t.Errorf("images: init %s, serve %s; want the same, tagged with appVersion", init.Image, serve.Image)
	}
	hostMount(t, p, init, "/etc/containerd/certs.d")
	if m, _ := hostMount(t, p, init, "/etc/containerd/config.toml"); !m.ReadOnly {
		t.Errorf("containerd's config mounted read-write")
	}

	// serve: the mirror on loopback, the registry, the mirror token.
	for f, want := range map[string]string{
		"--listen": "127.0.0.1:5050", "--metrics-listen": "127.0.0.1:5051", "--registry": registry,
		"--namespace": "k8s.io", "--hosts-dir": "/etc/containerd/certs.d", "--sweep-interval": "30m",
		"--mirror-token-file": "/etc/regmend/mirror-token",
	} {
		if got, _ := argValue(serve.Args, f); got != want {
			t.Errorf("serve %s = %q, want %q", f, got, want)
		}
	}
	hostMount(t, p, serve, "/etc/regmend")
	hostMount(t, p, init, "/etc/regmend")
	if _, ok := argValue(serve.Args, "--auth-file"); ok {
		t.Error("--auth-file without push credentials configured")
	}

	checkCluster(t, objs, p, serve, "regmend-peer-token")
	checkHooks(t, serve, []string{registry}, "http://127.0.0.1:5050", "/etc/regmend/mirror-token")
	if len(harness.Objects(objs, "ServiceMonitor")) != 0 {
		t.Error("a ServiceMonitor by default")
	}
}

// checkCluster asserts cluster mode: the headless Service the peers find each
// other by, the peer flags, the token Secret mounted.
func checkCluster(t *testing.T, objs []harness.Object, p harness.PodSpec, serve harness.Container, tokenSecret string) {
	t.Helper()
	var svc harness.Service
	o := one(t, objs, "Service")
	decode(t, o, &svc)
	if svc.Spec.ClusterIP != "None" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 5052 {
		t.Errorf("peers Service %s: %+v, want headless with port 5052", o.Metadata.Name, svc.Spec)
	}
	ds, _ := pod(t, objs)
	if !subset(svc.Spec.Selector, ds.Spec.Template.Metadata.Labels) {
		t.Errorf("peers Service selects %v, pods carry %v", svc.Spec.Selector, ds.Spec.Template.Metadata.Labels)
	}
	if got, _ := argValue(serve.Args, "--peers-dns"); got != o.Metadata.Name+".kube-system.svc.cluster.local:5052" {
		t.Errorf("--peers-dns %q, want the headless Service %s.kube-system.svc.cluster.local:5052", got, o.Metadata.Name)
	}
	if got, _ := argValue(serve.Args, "--peer-listen"); got != "$(NODE_IP):5052" {
		t.Errorf("--peer-listen %q", got)
	}
	var nodeIP bool
	for _, e := range serve.Env {
		nodeIP = nodeIP || (e.Name == "NODE_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.hostIP")
	}
	if !nodeIP {
		t.Error("no NODE_IP from the downward API (status.hostIP)")
	}
	if p.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("dnsPolicy %q: on the host network only ClusterFirstWithHostNet resolves the peers' Service", p.DNSPolicy)
	}
	tokenFile, _ := argValue(serve.Args, "--peer-token-file")
	if got := secretAt(p, serve, filepath.Dir(tokenFile)); got != tokenSecret {
		t.Errorf("--peer-token-file %s is in Secret %q, want %q", tokenFile, got, tokenSecret)
	}
}

// checkHooks asserts the uninstall path (preStop removes regmend's entry for
// every registry and, with the mirror token on, deletes the token file so no
// token stays on the node) and the restore after a container restart
// (postStart).
func checkHooks(t *testing.T, serve harness.Container, registries []string, mirror, tokenFile string) {
	t.Helper()
	l := serve.Lifecycle
	if l == nil || l.PreStop == nil || l.PreStop.Exec == nil {
		t.Fatalf("lifecycle %+v, want an exec preStop hook", l)
	}
	pre := l.PreStop.Exec.Command
	want := append(append([]string{"/usr/bin/regmend", "hosts", "--remove"}, registries...), "--hosts-dir")
	if !slices.Equal(pre[:len(want)], want) {
		t.Errorf("preStop %q, want it to start %q", pre, want)
	}
	if got, _ := argValue(pre, "--mirror"); got != mirror {
		t.Errorf("preStop --mirror %q, want %q", got, mirror)
	}
	if got, _ := argValue(pre, "--mirror-token-file"); got != tokenFile || slices.Contains(pre, "--keep-mirror-token") {
		t.Errorf("preStop %q: --mirror-token-file %q, want %q and the file not kept", pre, got, tokenFile)
	}
	// postStart lists regmend again for every registry after a restart of
	// the container alone (`regmend hosts` takes them all in one command).
	if l.PostStart == nil || l.PostStart.Exec == nil {
		t.Fatalf("no exec postStart hook")
	}
	post := l.PostStart.Exec.Command
	want = append([]string{"/usr/bin/regmend", "hosts"}, registries...)
	if !slices.Equal(post[:len(want)], want) || slices.Contains(post, "--remove") {
		t.Errorf("postStart %q, want it to start %q", post, want)
	}
}

func TestChartPeerTokenSecret(t *testing.T) {
	objs := parse(t, template(t, "--set", "registries={"+registry+"}"))
	var s harness.Secret
	o := one(t, objs, "Secret")
	decode(t, o, &s)
	tok, err := base64.StdEncoding.DecodeString(s.Data["token"])
	if err != nil || len(tok) < 32 {
		t.Errorf("generated peer token Secret %s: %d bytes (%v), want at least 32", o.Metadata.Name, len(tok), err)
	}
	_, p := pod(t, objs)
	checkCluster(t, objs, p, serveContainer(t, p), o.Metadata.Name)

	// A token given as an existing Secret: none generated, that one mounted.
	objs = parse(t, template(t, "--set", "registries={"+registry+"}", "--set", "cluster.token.existingSecret=mine"))
	if n := len(harness.Objects(objs, "Secret")); n != 0 {
		t.Errorf("%d Secrets rendered with an existing token Secret", n)
	}
	_, p = pod(t, objs)
	checkCluster(t, objs, p, serveContainer(t, p), "mine")
}

func subset(sub, super map[string]string) bool {
	if len(sub) == 0 {
		return false
	}
	for k, v := range sub {
		if super[k] != v {
			return false
		}
	}
	return true
}
