package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestHealFromRegistrySource heals one distribution registry from another
// (package source's registry source): the whole index is pushed, the
// source registry is only read, each of its blobs with one GET; then a
// repository of the source registry itself is healed from it with
// cross-repository mounts, which distribution does, so no blob's bytes
// move.
func TestHealFromRegistrySource(t *testing.T) {
	harness.RequireE2E(t)
	ctx := t.Context()
	srcReg := harness.StartRegistry(t, harness.RegistryOptions{Name: "source"})
	dstReg := harness.StartRegistry(t, harness.RegistryOptions{Name: "dest"})
	idx := harness.PushIndex(ctx, t, srcReg.Ref("app:v1"), harness.IndexSpec{Platforms: []string{"linux/amd64", "linux/arm64"}, Layers: 2, LayerSize: 3 << 20})
	hosts := t.TempDir()
	for _, r := range []string{srcReg.Addr(), dstReg.Addr()} {
		imagetest.WriteHostsTOML(t, hosts, r, fmt.Sprintf("server = %q\n", "http://"+r))
	}
	remote, err := registry.NewRemote(registry.WithHostsDir(hosts))
	if err != nil {
		t.Fatal(err)
	}
	var blobs []digest.Digest
	manifests := []digest.Digest{idx.Digest}
	for _, c := range idx.Children {
		blobs = append(blobs, c.Blobs()...)
		manifests = append(manifests, c.Digest)
	}

	from, ref, err := source.Open(ctx, srcReg.Ref("app:v1"), remote, source.WithMountInto(dstReg.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	root, err := from.Resolve(ctx, ref)
	if err != nil || root.Digest != idx.Digest || root.MediaType != idx.MediaType {
		t.Fatalf("resolve %s in %s: %v, %v; want %s", ref, from, root.Digest, err, idx.Digest)
	}
	before := len(srcReg.Requests())
	h, err := heal.NewHealer(from, remote)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Heal(ctx, heal.Target{Registry: dstReg.Addr(), Repository: "app", Root: root})
	if err != nil {
		t.Fatalf("heal from %s: %v", from, err)
	}
	if res.Pushed != len(blobs)+len(manifests) || res.Mounted != 0 {
		t.Errorf("pushed %d, mounted %d; want all %d pushed", res.Pushed, res.Mounted, len(blobs)+len(manifests))
	}
	for _, d := range blobs {
		if !dstReg.BlobExists("app", d) {
			t.Errorf("destination lacks blob %s", d)
		}
	}
	for _, d := range manifests {
		if !dstReg.ManifestExists("app", d) {
			t.Errorf("destination lacks manifest %s", d)
		}
	}
	gets := map[string]int{}
	for _, r := range srcReg.Requests()[before:] {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			t.Errorf("the source registry got %s %s", r.Method, r.URI)
		}
		if p, ok := strings.CutPrefix(r.URI, "/v2/app/blobs/"); ok && r.Method == http.MethodGet {
			gets[p]++
		}
	}
	for _, d := range blobs {
		if gets[d.String()] != 1 {
			t.Errorf("blob %s read from the source with %d GETs, want 1", d, gets[d.String()])
		}
	}

	// Within the source's own registry: mounts, no bytes.
	from, ref, err = source.Open(ctx, srcReg.Ref("app:v1"), remote, source.WithMountInto(srcReg.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	if root, err = from.Resolve(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if h, err = heal.NewHealer(from, remote); err != nil {
		t.Fatal(err)
	}
	before = len(srcReg.Requests())
	if res, err = h.Heal(ctx, heal.Target{Registry: srcReg.Addr(), Repository: "copy", Root: root}); err != nil {
		t.Fatalf("heal copy from %s: %v", from, err)
	}
	if res.Mounted != len(blobs) || res.Pushed != len(manifests) {
		t.Errorf("into copy: mounted %d, pushed %d; want %d blobs mounted, %d manifests pushed", res.Mounted, res.Pushed, len(blobs), len(manifests))
	}
	for _, r := range srcReg.Requests()[before:] {
		if r.Method == http.MethodPut && strings.Contains(r.URI, "/blobs/uploads/") || r.Method == http.MethodGet && strings.HasPrefix(r.URI, "/v2/app/blobs/") {
			t.Errorf("blob bytes moved within the registry: %s %s", r.Method, r.URI)
		}
	}
	for _, d := range blobs {
		if !srcReg.BlobExists("copy", d) {
			t.Errorf("copy lacks blob %s", d)
		}
	}
}
