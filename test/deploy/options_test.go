package deploy

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/regmend/regmend/test/e2e/harness"
)

// TestChartNonDefault renders every value the chart offers set away from its
// default (testdata/non-default.yaml): two registries, k3s paths, no config
// check, push credentials, no mirror token, no cluster mode, a ServiceMonitor.
func TestChartNonDefault(t *testing.T) {
	objs := parse(t, template(t, "-f", filepath.Join(repo(t), "test", "deploy", "testdata", "non-default.yaml")))
	_, p := pod(t, objs)
	serve := serveContainer(t, p)
	const hostsDir = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"
	registries := []string{"edge:5000", "registry.example.com"}

	// An init container per registry, each naming its own.
	if len(p.InitContainers) != len(registries) {
		t.Fatalf("%d init containers, want one per registry (%d)", len(p.InitContainers), len(registries))
	}
	for i, r := range registries {
		c := p.InitContainers[i]
		want := []string{"hosts", r, "--hosts-dir", hostsDir, "--mirror", "http://127.0.0.1:6050"}
		if !slices.Equal(c.Args, want) {
			t.Errorf("init %s args\n got %q\nwant %q", c.Name, c.Args, want)
		}
		if c.Image != "edge:5000/regmend:v9.9.9" {
			t.Errorf("init image %s", c.Image)
		}
		if m, _ := hostMount(t, p, c, hostsDir); m.MountPath != hostsDir || m.ReadOnly {
			t.Errorf("init hosts dir mount %+v", m)
		}
	}
	if got := argValues(serve.Args, "--registry"); !slices.Equal(got, registries) {
		t.Errorf("serve --registry %q, want %q", got, registries)
	}
	checkHooks(t, serve, registries, "http://127.0.0.1:6050", "")

	if m, _ := hostMount(t, p, serve, "/run/k3s/containerd"); !m.ReadOnly {
		t.Errorf("k3s socket dir mount %+v", m)
	}
	for f, want := range map[string]string{
		"--address": "/run/k3s/containerd/containerd.sock", "--namespace": "other", "--hosts-dir": hostsDir,
		"--listen": "127.0.0.1:6050", "--metrics-listen": "$(NODE_IP):6051", "--sweep-interval": "0",
		"--auth-file": "/var/run/regmend/push/.dockerconfigjson", "--workers": "4",
	} {
		if got, _ := argValue(serve.Args, f); got != want {
			t.Errorf("serve %s = %q, want %q", f, got, want)
		}
	}
	if got := secretAt(p, serve, "/var/run/regmend/push"); got != "push-creds" {
		t.Errorf("push credentials from Secret %q, want push-creds", got)
	}
	// Metrics on the node's address (for the ServiceMonitor): probes go to
	// the pod IP, which is the node's.
	if h := serve.LivenessProbe.HTTPGet; h.Host != "" || h.Port != 6051 {
		t.Errorf("liveness probe %+v, want the pod IP and port 6051", *h)
	}

	// Off: the mirror token, cluster mode, the config check.
	for _, c := range append(p.InitContainers, serve) {
		for _, f := range []string{"--mirror-token-file", "--peer-listen", "--peers-dns", "--peer-token-file", "--containerd-config"} {
			if slices.Contains(c.Args, f) {
				t.Errorf("%s has %s though it is disabled", c.Name, f)
			}
		}
	}
	for _, v := range p.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/etc/regmend" {
			t.Error("the mirror token's host dir is mounted though the token is disabled")
		}
	}
	if p.DNSPolicy != "Default" {
		t.Errorf("dnsPolicy %q without cluster mode", p.DNSPolicy)
	}
	if n := len(harness.Objects(objs, "Secret")); n != 0 {
		t.Errorf("%d Secrets without cluster mode", n)
	}

	// The ServiceMonitor and the metrics Service it selects.
	sm := one(t, objs, "ServiceMonitor")
	if sm.Metadata.Labels["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v", sm.Metadata.Labels)
	}
	var svc harness.Service
	decode(t, one(t, objs, "Service"), &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].Port != 6051 {
		t.Errorf("metrics Service %+v", svc.Spec)
	}
}

// TestChartPresets renders the documented presets: each points every mount
// and flag at that distribution's containerd.
func TestChartPresets(t *testing.T) {
	for _, tc := range []struct{ preset, socket, config, hostsDir, contentDir string }{
		{"kubeadm", "/run/containerd/containerd.sock", "/etc/containerd/config.toml", "/etc/containerd/certs.d",
			"/var/lib/containerd/io.containerd.content.v1.content"},
		{"k3s", "/run/k3s/containerd/containerd.sock", "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", "/var/lib/rancher/k3s/agent/etc/containerd/certs.d",
			"/var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content"},
		{"rke2", "/run/k3s/containerd/containerd.sock", "/var/lib/rancher/rke2/agent/etc/containerd/config.toml", "/var/lib/rancher/rke2/agent/etc/containerd/certs.d",
			"/var/lib/rancher/rke2/agent/containerd/io.containerd.content.v1.content"},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			objs := parse(t, template(t, "--set", "registries={"+registry+"}",
				"-f", filepath.Join(repo(t), "deploy", "helm", "presets", tc.preset+".yaml")))
			_, p := pod(t, objs)
			serve := serveContainer(t, p)
			init := p.InitContainers[0]
			if got, _ := argValue(serve.Args, "--address"); got != tc.socket {
				t.Errorf("--address %q", got)
			}
			hostMount(t, p, serve, filepath.Dir(tc.socket))
			hostMount(t, p, serve, tc.contentDir)
			if got, _ := argValue(serve.Args, "--content-dir"); got != tc.contentDir {
				t.Errorf("--content-dir %q", got)
			}
			for _, c := range []harness.Container{init, serve} {
				if got, _ := argValue(c.Args, "--hosts-dir"); c.Name == init.Name && got != tc.hostsDir {
					t.Errorf("%s --hosts-dir %q", c.Name, got)
				}
				hostMount(t, p, c, tc.hostsDir)
				hostMount(t, p, c, tc.config)
			}
			if got, _ := argValue(init.Args, "--containerd-config"); got != tc.config {
				t.Errorf("--containerd-config %q", got)
			}
		})
	}
}
