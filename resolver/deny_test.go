package resolver_test

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// A Go program's pull of a denied digest fails as it would without regmend:
// the registry's NotFound stands, naming the entry, nothing is served from
// the local store and nothing is pushed.
func TestHealingResolverDenied(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	list, err := deny.Parse("deny", strings.NewReader(f.Host+"/app\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := resolver.NewHealingResolver(notFound{}, f.Healer, content.Local{Store: f.CS, Blobs: f.CS}, resolver.WithDeny(list))
	ref := f.Host + "/app@" + m1.Desc.Digest.String()
	if _, _, err := r.Resolve(context.Background(), ref); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), f.Host+"/app") {
		t.Errorf("Resolve of a denied digest = %v; want the registry's NotFound naming the entry", err)
	}
	fetcher, err := r.Fetcher(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := fetcher.Fetch(context.Background(), m1.Layers[0].Desc); !errdefs.IsNotFound(err) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Fetch of a denied layer = %v; want the registry's NotFound", err)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("the resolver wrote to the registry: %v", w)
	}
}
