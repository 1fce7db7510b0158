package registry_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/resolver/registry"
)

// TestNoCredentialsOverHTTP: an https registry that sends a request of
// regmend's to http://itself (an upload Location, a redirect) never gets
// the credentials over plain HTTP. The name example.com is one host with
// two ports: 443 a TLS server that wants basic auth, 80 a plain one that
// records what it was sent.
func TestNoCredentialsOverHTTP(t *testing.T) {
	const user, password = "heal", "s3cret"
	cases := []struct {
		name string
		// secure answers an authorized request to the https side.
		secure http.HandlerFunc
		send   func(t *testing.T, s *registry.Session)
	}{{
		name: "upload Location",
		secure: func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				t.Errorf("unexpected access: %s %s", r.Method, r.URL)
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Location", "http://example.com/v2/app/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
		},
		send: func(t *testing.T, s *registry.Session) {
			cs, _, desc := localBlob(t, 1024)
			if _, err := s.Upload(t.Context(), desc, opener(t.Context(), cs, desc)); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "redirect",
		secure: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://example.com"+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		},
		send: func(t *testing.T, s *registry.Session) {
			if ok, err := s.Exists(t.Context(), ocispec.Descriptor{Digest: digest.FromString("x"), Size: 1}, false); !ok || err != nil {
				t.Fatalf("HEAD through the redirect: %v, %v", ok, err)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var plain []string // what the http side saw
			insecure := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				plain = append(plain, r.Method+" "+r.URL.Path+" Authorization="+r.Header.Get("Authorization"))
				mu.Unlock()
				if r.Method == http.MethodHead {
					return // 200: the blob is there
				}
				w.WriteHeader(http.StatusCreated)
			}), false)
			secure := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				tc.secure(w, r)
			}), true)
			tr := freshTransport(t)
			tr.TLSClientConfig = secure.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				to := map[string]string{"example.com:443": secure.Listener.Addr().String(), "example.com:80": insecure.Listener.Addr().String()}[addr]
				if to == "" {
					t.Errorf("unexpected dial: %s", addr)
					to = addr
				}
				return (&net.Dialer{}).DialContext(ctx, network, to)
			}
			client := &http.Client{Transport: tr}
			h := hostOf("example.com", "https")
			h.Client = client
			h.Authorizer = docker.NewDockerAuthorizer(docker.WithAuthClient(client), docker.WithAuthCreds(func(string) (string, string, error) { return user, password, nil }))
			s := session(t, newRemote(t, oneHost(h), 1), "example.com", "app")
			tc.send(t, s)
			mu.Lock()
			defer mu.Unlock()
			if len(plain) == 0 {
				t.Fatal("the http side was never asked")
			}
			for _, r := range plain {
				if !strings.HasSuffix(r, "Authorization=") {
					t.Errorf("credentials sent over plain http: %s", r)
				}
			}
		})
	}
}
