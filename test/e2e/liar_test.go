package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestHealDoesNotTrustStaleHead: distribution with
// storage.cache.blobdescriptor: inmemory, garbage-collected while it keeps
// serving, answers HEAD 200 for the blobs GC deleted and GET with no body.
// The orphan's manifest is 404: evidence of loss, so `regmend heal` reads
// each blob back instead of trusting its HEAD, uploads them all, and a
// fresh node's CRI pull then succeeds (it failed with a short read when
// the heal put the manifest alone).
func TestHealDoesNotTrustStaleHead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	reg.CacheBlobDescriptors()
	nodeA := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA"})
	nodeA.UseRegistry(reg)
	img := harness.PushImage(ctx, t, reg.Ref("app:v1"), harness.ImageSpec{Layers: 2, LayerSize: 64 << 10})
	mustPull(ctx, t, nodeA, reg.Ref("app:v1"))
	harness.PushIndex(ctx, t, reg.Ref("app:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}})
	reg.GarbageCollectLive()

	// The registry's lie, as in the field: the manifest is gone, its
	// blobs are claimed and not served.
	if reg.ManifestExists("app", img.Digest) {
		t.Fatalf("GC kept D1 %s: the scenario did not reproduce", img.Digest)
	}
	for _, d := range img.Blobs() {
		status, n, err := reg.BlobRead("app", d.String())
		if !reg.BlobExists("app", d) || status != http.StatusOK || n != 0 {
			t.Fatalf("blob %s after a live GC: HEAD present=%v, GET %d with %d bytes (%v); want HEAD 200 and GET 200 with no body (the stale cache)\n%s",
				d, reg.BlobExists("app", d), status, n, err, harness.TailFile(reg.LogPath(), 40))
		}
	}

	ref := reg.Ref("app@" + img.Digest.String())
	out, stderr, code := runRegmend(ctx, t, nodeA, "heal", "-o", "json", ref)
	if code != 0 {
		t.Fatalf("heal exit %d:\n%s\n%s", code, out, stderr)
	}
	var results []heal.Result
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 {
		t.Fatalf("heal -o json is not one result (%v):\n%s", err, out)
	}
	if r := results[0]; r.Pushed != len(img.Blobs())+1 || !r.ReadBack {
		t.Errorf("result pushed=%d readBack=%v; want every blob and the manifest pushed (%d), the closure read back",
			r.Pushed, r.ReadBack, len(img.Blobs())+1)
	}
	for _, d := range img.Blobs() {
		if status, n, err := reg.BlobRead("app", d.String()); status != http.StatusOK || n == 0 || err != nil {
			t.Errorf("blob %s after the heal: GET %d with %d bytes (%v), want its bytes", d, status, n, err)
		}
	}

	nodeB := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeB"})
	nodeB.UseRegistry(reg)
	if out, err := nodeB.Pull(ctx, ref); err != nil {
		t.Fatalf("fresh node pull %s after the heal: %v\n%s\nregistry log:\n%s", ref, err, out, harness.TailFile(reg.LogPath(), 40))
	}
	if !nodeB.HasContent(ctx, img.Layers[0]) {
		t.Errorf("fresh node lacks layer %s after its pull", img.Layers[0])
	}
	if strings.Contains(stderr, "panic") {
		t.Errorf("heal stderr: %s", stderr)
	}
}
