package peers

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/mirror"

	"github.com/regmend/regmend/internal/imagetest"
)

func TestPeerEndpointRequiresToken(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 1024)
	a := startHolder(t, tok, img)
	other := newToken(t)
	for _, c := range []struct {
		name   string
		header []string
		want   int
	}{
		{"no token", nil, 401},
		{"wrong token", []string{"Authorization", "Bearer " + other.Reveal()}, 401},
		{"basic scheme", []string{"Authorization", "Basic " + tok.Reveal()}, 401},
		{"token", []string{"Authorization", "Bearer " + tok.Reveal()}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp, b, err := fetchFrom(t, a.srv.URL, method, "manifests", img.Desc.Digest, c.header...)
				if err != nil || resp.StatusCode != c.want {
					t.Fatalf("%s: status %v err %v, want %d", method, resp.StatusCode, err, c.want)
				}
				if c.want == 401 {
					if resp.Header.Get("WWW-Authenticate") == "" || resp.Header.Get("Docker-Content-Digest") != "" || len(b) > 0 && string(b) == string(img.Data) {
						t.Errorf("%s: 401 carried content or lacked WWW-Authenticate: %q %q", method, resp.Header, b)
					}
				}
			}
		})
	}
	if got := a.queue.requests(); len(got) != 2 {
		t.Errorf("heals queued = %d, want 2 (the authenticated GET and HEAD only)", len(got))
	}
	if got := value(t, a.metrics.refused.WithLabelValues("wrong")); got != 2 {
		t.Errorf("refused{wrong} = %v, want 2", got)
	}
	if got := value(t, a.metrics.refused.WithLabelValues("missing")); got != 4 {
		t.Errorf("refused{missing} = %v, want 4 (none, and a Basic credential)", got)
	}
}

func TestProbeQueuesNoHeal(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 1024)
	a := startHolder(t, tok, img)
	resp, _, err := fetchFrom(t, a.srv.URL, http.MethodHead, "manifests", img.Desc.Digest, "Authorization", "Bearer "+tok.Reveal(), ProbeHeader, "1")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("probe: status %v err %v", resp.StatusCode, err)
	}
	if got := a.queue.requests(); len(got) != 0 {
		t.Errorf("a probe queued heals %v", got)
	}
}

func TestProbeSaysHealing(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 1024)
	cs, _ := imagetest.LocalStore(t)
	imagetest.WriteLocal(t, cs, testRegistry, testRepo, img)
	healing := func(registry, repo string, d digest.Digest) bool {
		return registry == testRegistry && repo == testRepo && d == img.Desc.Digest
	}
	srv := httptest.NewServer(NewEndpoint(secret.Static(tok), mirror.New(cs, allowAll{}), mirror.New(cs, allowAll{}), nil, WithHealing(healing)))
	t.Cleanup(srv.Close)
	auth := []string{"Authorization", "Bearer " + tok.Reveal()}
	resp, _, err := fetchFrom(t, srv.URL, http.MethodHead, "manifests", img.Desc.Digest, append(auth, ProbeHeader, "1")...)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get(HealingHeader) == "" {
		t.Errorf("probe of a root being healed: status %v, %s %q", resp.StatusCode, HealingHeader, resp.Header.Get(HealingHeader))
	}
	resp, _, _ = fetchFrom(t, srv.URL, http.MethodHead, "manifests", img.Desc.Digest, auth...)
	if resp.Header.Get(HealingHeader) != "" {
		t.Error("a request that is not a probe was told about heals")
	}
}
