package kube

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/regmend/regmend/test/e2e/harness"
)

// nodeName is the test cluster's one node.
const nodeName = "regmend-node"

// cluster is a one-node Kubernetes cluster on loopback whose kubelet runs
// pods on node's containerd.
type cluster struct {
	dir        string
	kubeletDir string
	pki        *pki
	apiPort    int
	kubeconfig string
	client     *kubernetes.Clientset
	node       *harness.Containerd
}

// Every component binds a port fixed in its flags before it starts: etcd
// and kube-apiserver cannot report a port 0 bind, the kubelet's port is
// written in its config. Those ports are harness.ReservePort's (held for
// the whole test, never free); every other server is off (port 0 means
// "don't serve" to the controller-manager, the scheduler and the kubelet's
// read-only and healthz ports).
func startCluster(t *testing.T, node *harness.Containerd) *cluster {
	t.Helper()
	etcdBin, apiBin := harness.Tool(t, "etcd"), harness.Tool(t, "kube-apiserver")
	kcmBin, schedBin, kubeletBin := harness.Tool(t, "kube-controller-manager"), harness.Tool(t, "kube-scheduler"), harness.Tool(t, "kubelet")
	c := &cluster{dir: t.TempDir(), node: node}
	c.pki = newPKI(t, c.dir)

	etcdClient, etcdPeer := harness.ReservePort(t), harness.ReservePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	etcd := harness.StartProc(t, harness.ProcSpec{Name: "etcd", Path: etcdBin, Args: []string{
		"--name", "n0", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "n0=" + peerURL, "--log-level", "warn",
	}})
	if err := harness.WaitFor(60*time.Second, etcd, "etcd health", func() error { return get(etcdURL + "/health") }); err != nil {
		t.Fatal(err)
	}

	c.apiPort = harness.ReservePort(t)
	api := harness.StartProc(t, harness.ProcSpec{Name: "kube-apiserver", Path: apiBin, Args: []string{
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(c.apiPort),
		"--tls-cert-file", c.pki.serverCert, "--tls-private-key-file", c.pki.serverKey,
		"--client-ca-file", c.pki.caCert,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", c.pki.saPub, "--service-account-signing-key-file", c.pki.saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--authorization-mode", "Node,RBAC",
		// The API server listens on loopback only, which no Endpoints
		// object may name; pods reach it as the chart's events.apiServer.
		"--endpoint-reconciler-type", "none",
	}})
	c.kubeconfig = c.writeKubeconfig(t)
	cfg := c.restConfig()
	var err error
	if c.client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(2*time.Minute, api, "kube-apiserver /readyz", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
	if err != nil {
		t.Fatal(err)
	}

	harness.StartProc(t, harness.ProcSpec{Name: "kube-controller-manager", Path: kcmBin, Args: []string{
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--secure-port", "0",
		"--service-account-private-key-file", c.pki.saKey, "--root-ca-file", c.pki.caCert,
	}})
	harness.StartProc(t, harness.ProcSpec{Name: "kube-scheduler", Path: schedBin, Args: []string{
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--secure-port", "0",
	}})
	c.startKubelet(t, kubeletBin)
	return c
}

func (c *cluster) restConfig() *rest.Config {
	return &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", c.apiPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: c.pki.caCert, CertFile: c.pki.adminCert, KeyFile: c.pki.adminKey,
		},
	}
}

func (c *cluster) writeKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(c.dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, c.apiPort, c.pki.caCert, c.pki.adminCert, c.pki.adminKey)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startKubelet runs the kubelet on the test containerd, with its state in
// a private root directory; before containerd stops, every pod is removed
// (their shims outlive containerd otherwise) and the kubelet's volume
// mounts are taken down.
func (c *cluster) startKubelet(t *testing.T, bin string) {
	t.Helper()
	root, err := os.MkdirTemp("/tmp", "rmd-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := c.node.Crictl(ctx, "rmp", "--all", "--force"); err != nil {
			t.Logf("remove the pods: %v\n%s", err, out)
		}
		unmountAll(t, root)
		if err := os.RemoveAll(root); err != nil {
			t.Logf("remove %s: %v", root, err)
		}
	})
	c.kubeletDir = root
	port := harness.ReservePort(t)
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
cgroupDriver: cgroupfs
# This machine has cgroup v1, which kubelet 1.35+ refuses unless told.
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
podLogsDir: %q
nodeStatusUpdateFrequency: 2s
# The pods' ConfigMap volumes (the deny list) follow an update within a
# sync: the kubelet watches the ConfigMap and rewrites the volume on the
# pod's next sync (1 min by default).
syncFrequency: 5s
configMapAndSecretChangeDetectionStrategy: Watch
`, port, c.pki.caCert, c.node.Socket(), c.node.Socket(), filepath.Join(root, "logs"))
	cfgPath := filepath.Join(root, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	kubelet := harness.StartProc(t, harness.ProcSpec{Name: "kubelet", Path: bin, Args: []string{
		"--config", cfgPath, "--kubeconfig", c.kubeconfig, "--root-dir", root,
		"--cert-dir", filepath.Join(root, "pki"), "--hostname-override", nodeName,
	}})
	err = harness.WaitFor(3*time.Minute, kubelet, "node "+nodeName+" Ready", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := c.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					t.Logf("node %s Ready, addresses %v", nodeName, n.Status.Addresses)
					return nil
				}
				return fmt.Errorf("Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return fmt.Errorf("no Ready condition")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dumpPodLogsOnFailure prints the tail of every container log of the pods
// in namespace ns if the test fails (before the kubelet's directory goes).
func (c *cluster) dumpPodLogsOnFailure(t *testing.T, ns string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(c.kubeletDir, "logs", ns+"_*", "*", "*.log"))
		for _, l := range logs {
			t.Logf("===== %s =====\n%s", l, harness.TailFile(l, 100))
		}
	})
}

func get(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
