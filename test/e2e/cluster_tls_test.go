package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

// peerPKI is a private CA and certificates for loopback, as PEM files.
type peerPKI struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPeerPKI(t *testing.T) *peerPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "regmend peers CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := &peerPKI{dir: t.TempDir(), key: key}
	p.cert, _ = x509.ParseCertificate(der)
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *peerPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// node issues a certificate for 127.0.0.1, for serving and as a client.
func (p *peerPKI) node(t *testing.T, name string) (cert, key string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &k.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kb)
}

func (p *peerPKI) tlsFlags(t *testing.T, name string) []string {
	cert, key := p.node(t, name)
	return []string{"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", filepath.Join(p.dir, "ca.pem")}
}

// TestClusterMutualTLS: peers over mutual TLS (the serve flags end to end):
// node C, holding nothing, pulls the orphan from node A over https with a
// client certificate; a client without one cannot even reach A's endpoint.
func TestClusterMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	nodeC := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeC"})
	nodeC.UseRegistry(s.reg)
	pki := newPeerPKI(t)
	tokenFile, token := writePeerToken(t)
	lnA, lnC := harness.Listen(t), harness.Listen(t) // A and C name each other
	addrA, addrC := lnA.Addr(), lnC.Addr()
	startPeerServe(t, s.nodeA, s.reg, lnA, tokenFile, []string{"https://" + addrC}, pki.tlsFlags(t, "node-a")...)
	srvC := startPeerServe(t, nodeC, s.reg, lnC, tokenFile, []string{"https://" + addrA}, pki.tlsFlags(t, "node-c")...)
	useMirror(ctx, t, nodeC, s.reg, srvC)

	mustPull(ctx, t, nodeC, s.reg.Ref("app@"+s.d1.String()))
	if n := srvC.Metric(t, "regmend_mirror_requests_total", `outcome="served_by_peer"`); n < 1 {
		t.Errorf("node C served %v requests from its peer", n)
	}
	waitRetained(t, s.reg, "app", s.d1, 60*time.Second)

	// Without a client certificate (token or not), no answer at all.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addrA+"/v2/app/manifests/"+s.d1.String()+"?ns="+s.reg.Addr(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	pool := x509.NewCertPool()
	pool.AddCert(pki.cert)
	tr := &http.Transport{TLSClientConfig: newTLSConfig(pool)}
	defer tr.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got status %d from the mutual-TLS peer endpoint", resp.StatusCode)
	}
}

func newTLSConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
