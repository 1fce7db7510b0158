package registry_test

import (
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/resolver/registry"
)

// TestRetryClassification: a registry this node cannot talk to as
// configured fails at once, naming the registry and what to change, and is
// not transient (so the heal queue does not back the registry off as if it
// were down); a registry that is down for a while is tried again.
func TestRetryClassification(t *testing.T) {
	const attempts = 3
	answer503 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	cases := []struct {
		name string
		// host returns the registry's name and its one host.
		host      func(t *testing.T) (string, docker.RegistryHost)
		transient bool
		fix       string // in the error when not transient
	}{{
		name: "certificate from an unknown authority",
		host: func(t *testing.T) (string, docker.RegistryHost) {
			srv := quietServer(t, answer503, true)
			h := hostOf(srv.Listener.Addr().String(), "https")
			h.Client = &http.Client{Transport: freshTransport(t)} // system roots only
			return h.Host, h
		},
		fix: "add the registry's CA to its hosts.toml (ca = ",
	}, {
		name: "certificate for another name",
		host: func(t *testing.T) (string, docker.RegistryHost) {
			srv := quietServer(t, answer503, true)
			_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
			tr := freshTransport(t)
			tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone() // trusts the server's CA
			h := hostOf(net.JoinHostPort("localhost", port), "https")                             // the certificate names 127.0.0.1, not localhost
			h.Client = &http.Client{Transport: tr}
			return h.Host, h
		},
		fix: "not issued for the name it is reached by",
	}, {
		name: "plain http server configured as https",
		host: func(t *testing.T) (string, docker.RegistryHost) {
			srv := quietServer(t, answer503, false)
			h := hostOf(srv.Listener.Addr().String(), "https")
			h.Client = &http.Client{Transport: freshTransport(t)}
			return h.Host, h
		},
		fix: `the registry speaks http, not https: set server = "http://...`,
	}, {
		name: "host not found",
		host: func(t *testing.T) (string, docker.RegistryHost) {
			if _, err := net.LookupHost("regmend-test.invalid"); !isNotFound(err) {
				t.Skipf("this node's resolver does not answer NXDOMAIN for .invalid: %v", err)
			}
			h := hostOf("regmend-test.invalid:5000", "https")
			h.Client = &http.Client{Transport: freshTransport(t)}
			return h.Host, h
		},
		fix: "host regmend-test.invalid not found",
	}, {
		name: "503",
		host: func(t *testing.T) (string, docker.RegistryHost) {
			srv := quietServer(t, answer503, false)
			h := hostOf(srv.Listener.Addr().String(), "http")
			h.Client = &http.Client{Transport: freshTransport(t)}
			return h.Host, h
		},
		transient: true,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name, h := tc.host(t)
			c := newCounted(h.Client.Transport)
			h.Client = c.Client
			s := session(t, newRemote(t, oneHost(h), attempts), name, "app")
			d := digest.FromString("x")
			_, err := s.Exists(t.Context(), ocispec.Descriptor{Digest: d, Size: 1}, false)
			if err == nil {
				t.Fatal("HEAD succeeded")
			}
			want := int64(1)
			if tc.transient {
				want = attempts
			}
			if n := c.n.Load(); n != want {
				t.Errorf("%d tries, want %d: %v", n, want, err)
			}
			if got := registry.IsTransient(err); got != tc.transient {
				t.Errorf("IsTransient = %v, want %v: %v", got, tc.transient, err)
			}
			t.Logf("after %d tries: %v", c.n.Load(), err)
			if tc.transient {
				return
			}
			if !errdefs.IsFailedPrecondition(err) {
				t.Errorf("not classified as failed precondition: %v", err)
			}
			if _, ok := registry.IsUnreachable(err); !ok {
				t.Errorf("IsUnreachable = false (the transport failure concerns the whole registry): %v", err)
			}
			for _, s := range []string{"registry " + name, tc.fix} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
		})
	}
}

func hostOf(hostport, scheme string) docker.RegistryHost {
	return docker.RegistryHost{Host: hostport, Scheme: scheme, Path: "/v2", Capabilities: allCaps}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// TestUnknownAuthorityThroughUpload: the classification holds for a write
// too, as the heal sends it (the HEAD came from a plan made earlier).
func TestUnknownAuthorityThroughUpload(t *testing.T) {
	srv := quietServer(t, http.NotFoundHandler(), true)
	h := hostOf(srv.Listener.Addr().String(), "https")
	c := newCounted(freshTransport(t))
	h.Client = c.Client
	s := session(t, newRemote(t, oneHost(h), 3), h.Host, "app")
	cs, _, desc := localBlob(t, 1024)
	err := s.Retry(t.Context(), func() error {
		_, err := s.Upload(t.Context(), desc, opener(t.Context(), cs, desc))
		return err
	})
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("upload to a registry with an unknown CA: %v, want x509.UnknownAuthorityError, failed precondition", err)
	}
	if n := c.n.Load(); n != 1 {
		t.Errorf("%d tries, want 1: %v", n, err)
	}
}

// TestUnknownAuthorityOfTheTokenServer: a token server this node does not
// trust is no more transient than the registry's own certificate, and the
// error names the token server.
func TestUnknownAuthorityOfTheTokenServer(t *testing.T) {
	tokens := quietServer(t, http.NotFoundHandler(), true)
	var heads atomic.Int64
	reg := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		heads.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+tokens.URL+`/token",service="registry"`)
		w.WriteHeader(http.StatusUnauthorized)
	}), false)
	client := &http.Client{Transport: freshTransport(t)}
	h := hostOf(reg.Listener.Addr().String(), "http")
	h.Client = client
	h.Authorizer = docker.NewDockerAuthorizer(docker.WithAuthClient(client))
	s := session(t, newRemote(t, oneHost(h), 3), h.Host, "app")
	_, err := s.Exists(t.Context(), ocispec.Descriptor{Digest: digest.FromString("x"), Size: 1}, false)
	if registry.IsTransient(err) || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("token server with an unknown CA: %v, want a permanent failed precondition", err)
	}
	if n := heads.Load(); n != 1 {
		t.Errorf("registry asked %d times, want once", n)
	}
	for _, s := range []string{"through host " + tokens.Listener.Addr().String(), "add the registry's CA"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not say %q: %v", s, err)
		}
	}
}
