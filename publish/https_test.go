package publish_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmend/regmend/publish"
)

// TestHTTPS: a registry name that is not local is reached over TLS, as
// go-containerregistry reaches it, through the caller's transport (which
// here resolves example.com to a loopback TLS server whose certificate
// names example.com).
func TestHTTPS(t *testing.T) {
	// The server speaks only TLS: a plain-HTTP request never reaches the
	// registry, so a publish that succeeds went over TLS.
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs, ServerName: "example.com"}
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	r, err := name.ParseReference("example.com:5443/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Context().Registry.Scheme() != "https" {
		t.Fatalf("go-containerregistry would reach %s over %s; the test wants https", r.Context().RegistryStr(), r.Context().Registry.Scheme())
	}
	ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1), image(t, ociFormat, "arm64", 1))
	if err := publish.WriteIndex(r, ii, publish.WithTransport(tr)); err != nil {
		t.Fatalf("publish.WriteIndex over https: %v", err)
	}
	got, err := remote.Index(r, remote.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d.String() != dig(t, ii).String() {
		t.Errorf("example.com:5443/app:v1 is %s, want %s", d, dig(t, ii))
	}
}
