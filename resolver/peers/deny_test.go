package peers

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/mirror"
)

func denyList(t *testing.T, entries ...string) *deny.List {
	t.Helper()
	l, err := deny.Parse("deny", strings.NewReader(strings.Join(entries, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The peer endpoint does not serve what its node's deny list names.
func TestEndpointRefusesDenied(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 2, 1024)
	cs, _ := imagetest.LocalStore(t)
	imagetest.WriteLocal(t, cs, testRegistry, testRepo, img)
	reg := prometheus.NewRegistry()
	d := deny.NewMetrics(reg).Counting(deny.WherePeer, denyList(t, img.Desc.Digest.String()))
	q := &recordingQueue{}
	ep := NewEndpoint(secret.Static(tok), mirror.New(cs, allowAll{}, mirror.WithHealQueue(q), mirror.WithDeny(d)),
		mirror.New(cs, allowAll{}, mirror.WithDeny(d)), NewMetrics(prometheus.NewRegistry()))
	holder := httptest.NewServer(ep)
	t.Cleanup(holder.Close)
	fresh, _ := startFresh(t, tok, holder.URL)

	for _, method := range []string{http.MethodHead, http.MethodGet} {
		if resp, _, err := fetchFrom(t, fresh.URL, method, "manifests", img.Desc.Digest); err != nil || resp.StatusCode != 404 {
			t.Errorf("%s of a manifest its holder denies: %v %v, want 404", method, resp.StatusCode, err)
		}
	}
	if resp, _, err := fetchFrom(t, fresh.URL, http.MethodGet, "blobs", img.Layers[0].Desc.Digest); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a layer the list does not name: %v %v, want 200", resp.StatusCode, err)
	}
	if slices.Contains(q.requests(), img.Desc.Digest) {
		t.Error("the holder queued a heal of what it denies")
	}
	if got := imagetest.Metric(t, reg, "regmend_denied_total", "where", deny.WherePeer); got < 2 {
		t.Errorf("regmend_denied_total{where=peer} = %v, want at least 2", got)
	}
}

// A node whose list denies a digest does not fetch it from a peer that
// would serve it.
func TestClientDoesNotFetchDenied(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 2, 1024)
	holder := startHolder(t, tok, img)
	members, err := NewMembership(WithStatic(holder.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	denied := img.Layers[0].Desc.Digest
	c, err := NewClient(members, secret.Static(tok), WithTimeout(500*time.Millisecond),
		WithClientDeny(denyList(t, testRegistry+"/"+testRepo+"@"+denied.String())))
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := imagetest.LocalStore(t)
	fresh := httptest.NewServer(mirror.New(cs, allowAll{}, mirror.WithFallback(c)))
	t.Cleanup(fresh.Close)

	for _, method := range []string{http.MethodHead, http.MethodGet} {
		if resp, _, err := fetchFrom(t, fresh.URL, method, "blobs", denied); err != nil || resp.StatusCode != 404 {
			t.Errorf("%s of a denied layer: %v %v, want 404", method, resp.StatusCode, err)
		}
	}
	allowed := img.Layers[1].Desc.Digest
	if resp, _, err := fetchFrom(t, fresh.URL, http.MethodGet, "blobs", allowed); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a layer the list does not name: %v %v, want 200", resp.StatusCode, err)
	}
	// The holder queues a heal for whatever it serves a peer: it was never
	// asked for the denied layer.
	got := holder.queue.requests()
	if !slices.Contains(got, allowed) || slices.Contains(got, denied) {
		t.Errorf("holder was asked for %v; want the allowed layer %s and not the denied %s", got, allowed, denied)
	}
}
