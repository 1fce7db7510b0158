package hostsfile

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
)

const (
	testRegistry = "edge:5000"
	testMirror   = "http://127.0.0.1:5050"
)

// containerdHosts loads the hosts containerd would try for registry, using
// containerd's own directory lookup under hostsDir.
func containerdHosts(t testing.TB, hostsDir, registry string) []docker.RegistryHost {
	t.Helper()
	hosts, err := config.ConfigureHosts(context.Background(), config.HostOptions{
		HostDir: config.HostDirFromRoot(hostsDir),
	})(registry)
	if err != nil {
		t.Fatalf("containerd ConfigureHosts: %v", err)
	}
	return hosts
}

// orderProblem checks, independently of the package's own check, that the
// mirror is the last [host] entry (exactly once, pull+resolve) and that an
// entry for the server's endpoint with pull and resolve precedes it.
func orderProblem(hosts []docker.RegistryHost, mirrorHost string) string {
	n := len(hosts)
	if n < 3 {
		return "fewer than 3 hosts"
	}
	m := hosts[n-2]
	if m.Host != mirrorHost || m.Path != "/v2" {
		return "mirror is not the last [host] entry"
	}
	if m.Capabilities != docker.HostCapabilityPull|docker.HostCapabilityResolve {
		return "mirror capabilities are not pull,resolve"
	}
	for _, h := range hosts[:n-2] {
		if h.Host == mirrorHost {
			return "mirror host listed twice"
		}
	}
	srv := hosts[n-1]
	for _, h := range hosts[:n-2] {
		if strings.EqualFold(h.Host, srv.Host) && h.Path == srv.Path &&
			h.Capabilities.Has(docker.HostCapabilityPull|docker.HostCapabilityResolve) {
			return ""
		}
	}
	return "no entry for the registry " + srv.Host + srv.Path + " before the mirror"
}

func assertOrder(t testing.TB, hostsDir, registry string) []docker.RegistryHost {
	t.Helper()
	hosts := containerdHosts(t, hostsDir, registry)
	if p := orderProblem(hosts, "127.0.0.1:5050"); p != "" {
		t.Fatalf("containerd order: %s\n%s", p, strings.Join(describe(hosts), "\n"))
	}
	return hosts
}

// writeHosts writes content as <dir>/<registry>/hosts.toml.
func writeHosts(t testing.TB, dir, registry, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, registry, "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dirNames lists the names in dir.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t testing.TB, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "regmend test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if keyPath != "" {
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
