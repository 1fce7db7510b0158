package peers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/mirror"
)

// testCA issues certificates for loopback, written as PEM files in dir.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	return &testCA{dir: dir, cert: cert, key: key}
}

func (ca *testCA) path(name string) string { return filepath.Join(ca.dir, name+".pem") }

// issue writes name.pem and name-key.pem: a certificate for 127.0.0.1 good
// for serving and for client authentication.
func (ca *testCA) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMutualTLS: an endpoint with a CA serves a peer that presents a
// certificate from that CA, and refuses the handshake to one that presents
// none or one from another CA; the token is required as well.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other-ca")
	srvCert, srvKey := ca.issue(t, "node-a")
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 2048)
	cs, _ := imagetest.LocalStore(t)
	imagetest.WriteLocal(t, cs, testRegistry, testRepo, img)

	cfg, err := ServerTLS(srvCert, srvKey, ca.path("ca"))
	if err != nil {
		t.Fatal(err)
	}
	ep := NewEndpoint(secret.Static(tok), mirror.New(cs, allowAll{}), mirror.New(cs, allowAll{}), nil)
	srv := httptest.NewUnstartedServer(ep)
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)

	fetch := func(t *testing.T, certName string, caFile string) (int, error) {
		t.Helper()
		var cert, key string
		if certName != "" {
			issuer := ca
			if certName == "stranger" {
				issuer = other
			}
			cert, key = issuer.issue(t, certName)
		}
		ccfg, err := ClientTLS(cert, key, caFile)
		if err != nil {
			t.Fatal(err)
		}
		members, _ := NewMembership(WithStatic(srv.URL))
		c, err := NewClient(members, secret.Static(tok), WithTLS(ccfg), WithClientMetrics(NewMetrics(prometheus.NewRegistry())))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := c.newRequest(t.Context(), http.MethodGet, members.Peers()[0], refOf(testRegistry, testRepo, img.Desc.Digest))
		resp, err := c.http.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		c.http.CloseIdleConnections()
		return resp.StatusCode, nil
	}
	if code, err := fetch(t, "node-c", ca.path("ca")); err != nil || code != 200 {
		t.Errorf("peer with a certificate from the CA: %d, %v; want 200", code, err)
	}
	if _, err := fetch(t, "", ca.path("ca")); err == nil {
		t.Error("peer without a client certificate got through the handshake")
	}
	if _, err := fetch(t, "stranger", ca.path("ca")); err == nil {
		t.Error("peer with a certificate from another CA got through the handshake")
	}
	if _, err := fetch(t, "node-c", ""); err == nil {
		t.Error("client trusted the endpoint without the CA")
	}
}
