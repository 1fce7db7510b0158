package publish_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/publish"
)

// requireAuth makes reg answer 401 with challenge to every request whose
// Authorization is not want; tokenFor, when set, serves a token endpoint
// at /token.
func requireAuth(reg *imagetest.Registry, want, challenge string, token http.HandlerFunc) {
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/token" && token != nil {
			token(w, r)
			return true
		}
		if r.Header.Get("Authorization") == want {
			return false
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
}

type keychain struct{ auth authn.Authenticator }

func (k keychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

// failing is a keychain and an authenticator that cannot give credentials.
type failing struct{ err error }

func (f failing) Resolve(authn.Resource) (authn.Authenticator, error) { return nil, f.err }
func (f failing) Authorization() (*authn.AuthConfig, error)           { return nil, f.err }

// TestCredentialsFail: a keychain or authenticator that fails fails the
// publish as unauthenticated, carrying its own error (a helper's message
// says what to fix), before any request.
func TestCredentialsFail(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	cause := errors.New("docker-credential-helper: no such helper")
	ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1))
	for name, opt := range map[string]publish.Option{
		"keychain":      publish.WithAuthFromKeychain(failing{cause}),
		"authenticator": publish.WithAuth(failing{cause}),
	} {
		err := publish.WriteIndex(ref(t, reg, "app:v1"), ii, opt)
		if !errdefs.IsUnauthorized(err) || !errors.Is(err, cause) || !strings.Contains(err.Error(), cause.Error()) {
			t.Errorf("%s failing: %v, want unauthenticated wrapping %q", name, err, cause)
		}
	}
	if got := reg.Log.All(); len(got) != 0 {
		t.Errorf("failed credentials sent %v", got)
	}
}

// TestCredentials: each kind of go-containerregistry credential reaches
// the registry as it expects it, through containerd's authorizer (an
// identity token is exchanged at the token server, with the caller's
// User-Agent).
func TestCredentials(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("pub:s3cret"))
	for _, tc := range []struct {
		name       string
		opt        publish.Option
		want       string
		challenge  string
		tokenCheck func(r *http.Request) bool
	}{
		{"basic", publish.WithAuth(&authn.Basic{Username: "pub", Password: "s3cret"}), basic, `Basic realm="test"`, nil},
		{"config auth field", publish.WithAuth(authn.FromConfig(authn.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("pub:s3cret"))})), basic, `Basic realm="test"`, nil},
		{"keychain", publish.WithAuthFromKeychain(keychain{&authn.Basic{Username: "pub", Password: "s3cret"}}), basic, `Basic realm="test"`, nil},
		{"registry token", publish.WithAuth(&authn.Bearer{Token: "rtok"}), "Bearer rtok", "", func(*http.Request) bool { return false }},
		{"identity token", publish.WithAuth(authn.FromConfig(authn.AuthConfig{IdentityToken: "refresh-me"})), "Bearer access-ok", "", func(r *http.Request) bool {
			return r.Method == http.MethodPost && r.PostFormValue("grant_type") == "refresh_token" && r.PostFormValue("refresh_token") == "refresh-me" &&
				r.Header.Get("User-Agent") == "publisher/1.0"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := imagetest.NewRegistry(t)
			challenge := tc.challenge
			var token http.HandlerFunc
			var tokens atomic.Int32
			if tc.tokenCheck != nil {
				challenge = `Bearer realm="` + reg.Base + `/token",service="test"`
				token = func(w http.ResponseWriter, r *http.Request) {
					if !tc.tokenCheck(r) {
						w.WriteHeader(http.StatusUnauthorized)
						return
					}
					tokens.Add(1)
					_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "access-ok", "expires_in": 300})
				}
			}
			requireAuth(reg, tc.want, challenge, token)
			// One request at a time: containerd's bearer authorizer
			// (v2.4.2 authorizer.go:289 against :303) reads a cached
			// token's expiry unlocked while the fetch that sets it ends,
			// which -race reports when requests race for the first token.
			jobs := publish.WithJobs(1)
			ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1))
			// A token server refusing an anonymous token is an error the
			// registry package does not classify; a registry's own 401 is.
			if err := publish.WriteIndex(ref(t, reg, "app:v1"), ii, jobs); err == nil || tc.tokenCheck == nil && !errdefs.IsUnauthorized(err) {
				t.Fatalf("without credentials: %v, want unauthorized", err)
			}
			if err := publish.WriteIndex(ref(t, reg, "app:v1"), ii, tc.opt, jobs, publish.WithUserAgent("publisher/1.0")); err != nil {
				t.Fatalf("with credentials: %v", err)
			}
			if err := pullIndex(t, reg, "app:v1"); err == nil {
				t.Fatal("the registry serves an anonymous pull: the test checks no credentials")
			}
			reg.SetFault(nil)
			if err := pullIndex(t, reg, "app:v1"); err != nil {
				t.Fatalf("pull what was published: %v", err)
			}
			if tc.name == "identity token" && tokens.Load() == 0 {
				t.Error("the identity token was never exchanged at the token endpoint")
			}
		})
	}
}

// recorder is a RoundTripper that records the User-Agent of each request
// it carries.
type recorder struct {
	mu     sync.Mutex
	agents []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.agents = append(r.agents, req.Header.Get("User-Agent"))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// TestTransportAndUserAgent: every request goes through the caller's
// transport, with the caller's User-Agent.
func TestTransportAndUserAgent(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	rec := &recorder{}
	ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1), image(t, ociFormat, "arm64", 1))
	err := publish.WriteIndex(ref(t, reg, "app:v1"), ii, publish.WithTransport(rec), publish.WithUserAgent("publisher/1.0"), publish.WithJobs(1))
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if sent := len(reg.Log.All()); len(rec.agents) != sent || sent == 0 {
		t.Errorf("the transport carried %d requests, the registry answered %d", len(rec.agents), sent)
	}
	for _, ua := range rec.agents {
		if ua != "publisher/1.0" {
			t.Errorf("a request's User-Agent is %q, want publisher/1.0", ua)
			break
		}
	}
	if !strings.Contains(strings.Join(rec.agents, ","), "publisher/1.0") {
		t.Error("no request carried the User-Agent")
	}
}
