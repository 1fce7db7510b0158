package mirror

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

// A denied digest and a denied repository are answered exactly as absent
// content, and never healed; what the list does not name is served and healed.
func TestMirrorDenied(t *testing.T) {
	f := healtest.New(t)
	remote := f.Remote(t, registry.WithRegistries(f.Host), registry.WithRetry(3, time.Millisecond))
	healer, err := heal.NewHealer(f.CS, remote)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	// One worker: heals run in request order, so once the allowed image is
	// healed, a heal queued for a denied one before it would have run.
	q, err := heal.NewQueue(healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithWorkers(1), heal.WithQueueMetrics(heal.NewMetrics(reg)))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)
	revoked := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", revoked)
	leaky := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.WriteLocal(t, f.CS, f.Host, "leaky", leaky)
	kept := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.WriteLocal(t, f.CS, f.Host, "kept", kept)

	list, err := deny.Parse("deny", strings.NewReader(revoked.Desc.Digest.String()+"\n"+f.Host+"/leaky\n"))
	if err != nil {
		t.Fatal(err)
	}
	dm := deny.NewMetrics(reg)
	srv := httptest.NewServer(New(f.CS, remote, WithHealQueue(q), WithMetrics(NewMetrics(reg)), WithDeny(dm.Counting(deny.WhereMirror, list))))
	t.Cleanup(srv.Close)
	ns := "?ns=" + f.Host
	absent, absentBody := get(t, http.MethodGet, srv.URL+"/v2/app/manifests/"+kept.Layers[0].Desc.Digest.String()+ns)

	for _, c := range []struct{ name, path string }{
		{"digest", "/v2/app/manifests/" + revoked.Desc.Digest.String()},
		{"digest's layer", "/v2/leaky/blobs/" + leaky.Layers[0].Desc.Digest.String()},
		{"repository", "/v2/leaky/manifests/" + leaky.Desc.Digest.String()},
	} {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			resp, body := get(t, method, srv.URL+c.path+ns)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: status %d, want 404", c.name, method, resp.StatusCode)
			}
			if method == http.MethodGet && strings.Contains(c.path, "/manifests/") && string(body) != string(absentBody) {
				t.Errorf("%s: body %s, want what absent content gets: %s", c.name, body, absentBody)
			}
			if ct := resp.Header.Get("Content-Type"); ct != absent.Header.Get("Content-Type") {
				t.Errorf("%s: Content-Type %q, want %q", c.name, ct, absent.Header.Get("Content-Type"))
			}
		}
	}
	if resp, _ := get(t, http.MethodGet, srv.URL+"/v2/kept/manifests/"+kept.Desc.Digest.String()+ns); resp.StatusCode != 200 {
		t.Fatalf("an image the list does not name: status %d, want 200", resp.StatusCode)
	}
	imagetest.WaitUntil(t, 10*time.Second, "the allowed image healed", func() bool { return f.Has(t, "kept", "manifests", kept.Blob) })
	imagetest.WaitUntil(t, 10*time.Second, "heal queue drained", func() bool { return q.Len() == 0 })
	for _, r := range f.Log.All() {
		if strings.Contains(r.Path, "/leaky/") || strings.Contains(r.Path, revoked.Desc.Digest.String()) {
			t.Errorf("the registry was asked about denied content: %s %s", r.Method, r.Path)
		}
	}
	if f.Has(t, "app", "manifests", revoked.Blob) || f.Has(t, "leaky", "manifests", leaky.Blob) || f.Has(t, "leaky", "blobs", leaky.Layers[0]) {
		t.Error("denied content was pushed to the registry")
	}
	if got := imagetest.Metric(t, reg, "regmend_denied_total", "where", deny.WhereMirror); got != 6 {
		t.Errorf("regmend_denied_total{where=mirror} = %v, want 6", got)
	}
	if got := imagetest.Metric(t, reg, "regmend_mirror_requests_total", "outcome", "denied"); got != 6 {
		t.Errorf("regmend_mirror_requests_total{outcome=denied} = %v, want 6", got)
	}
}
