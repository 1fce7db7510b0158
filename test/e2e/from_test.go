package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// publisherDamage is what the publisher's path repairs: on the edge
// registry, an orphan (app@D1, single-arch, reaped by GC after its tag moved
// to an index) and a dangling child (multi:v1 kept, its host-platform child
// and that child's blobs reaped). No node holds either.
type publisherDamage struct {
	edge  *harness.Registry
	orph  harness.PushedImage // D1
	idx   harness.PushedIndex // multi:v1
	child harness.PushedImage // the lost child of idx
}

func reapForPublisher(ctx context.Context, t *testing.T) *publisherDamage {
	t.Helper()
	d := &publisherDamage{edge: harness.StartRegistry(t, harness.RegistryOptions{})}
	d.orph = harness.PushImage(ctx, t, d.edge.Ref("app:v1"), harness.ImageSpec{Layers: 2, LayerSize: 64 << 10})
	harness.PushIndex(ctx, t, d.edge.Ref("app:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}})
	d.idx = harness.PushIndex(ctx, t, d.edge.Ref("multi:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}, Layers: 2, LayerSize: 64 << 10})
	d.child = d.idx.Child(t, harness.HostPlatform)
	d.edge.DeleteManifest("multi", d.child.Digest)
	d.edge.GarbageCollect()
	if d.edge.ManifestExists("app", d.orph.Digest) || d.edge.ManifestExists("multi", d.child.Digest) {
		t.Fatal("GC kept the orphan or the deleted child: the scenario did not reproduce")
	}
	for _, b := range d.child.Layers {
		if d.edge.BlobExists("multi", b) {
			t.Fatalf("GC kept the lost child's layer %s: the scenario did not reproduce", b)
		}
	}
	return d
}

// TestHealFromAnotherSource: the publisher's path, end to end on real
// distribution with its GC. The orphan and the dangling child are healed
// `--from oci:` a layout (written by go-containerregistry's layout package,
// as `crane pull --format oci` writes it) and `--from` another registry,
// with no containerd at all; the source is never written to; a fresh
// containerd node then pulls both through CRI, and a second GC keeps them.
func TestHealFromAnotherSource(t *testing.T) {
	for _, kind := range []string{"layout", "registry"} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			d := reapForPublisher(ctx, t)
			hosts := t.TempDir()
			imagetest.WriteHostsTOML(t, hosts, d.edge.Addr(), harness.HostsTOML(d.edge.Addr()))
			var orphFrom, idxFrom string
			var sourceWrites func() []string
			switch kind {
			case "layout":
				dir := writeLayout(t, d)
				orphFrom, idxFrom = "oci:"+dir+":app-d1", "oci:"+dir+":multi-v1"
				before := treeOf(t, dir)
				sourceWrites = func() []string {
					if after := treeOf(t, dir); after != before {
						return []string{"layout changed:\n" + before + "\n→\n" + after}
					}
					return nil
				}
			case "registry":
				up := harness.StartRegistry(t, harness.RegistryOptions{Name: "upstream"})
				imagetest.WriteHostsTOML(t, hosts, up.Addr(), harness.HostsTOML(up.Addr()))
				harness.WriteImage(ctx, t, up.Ref("app:d1"), d.orph.Image, d.orph.Platform)
				writeIndex(ctx, t, up.Ref("multi:v1"), d.idx)
				orphFrom, idxFrom = up.Ref("app@"+d.orph.Digest.String()), up.Ref("multi:v1")
				n := len(up.Requests())
				sourceWrites = func() []string { return writes(up.Requests()[n:]) }
			}

			out, code := regmendFrom(ctx, t, hosts, "check", "--from", idxFrom, d.edge.Ref("multi"))
			if code == 0 || !strings.Contains(out, "missing") {
				t.Errorf("check --from before the heal: exit %d, want non-zero naming what is missing:\n%s", code, out)
			}

			before := len(d.edge.Requests())
			out, code = regmendFrom(ctx, t, hosts, "heal", "-o", "json", "--from", orphFrom, d.edge.Ref("app"))
			if code != 0 {
				t.Fatalf("heal --from %s: exit %d:\n%s", orphFrom, code, out)
			}
			var results []heal.Result
			if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 {
				t.Fatalf("heal -o json is not one result (%v):\n%s", err, out)
			}
			if r := results[0]; r.Pushed != 4 || len(r.RetentionTags) != 1 || r.RetentionTags[0] != heal.RetentionTag(d.orph.Digest) {
				t.Errorf("orphan: pushed %d, tags %v; want 4 (2 layers, config, manifest) and the retention tag", r.Pushed, r.RetentionTags)
			}
			if got, _ := d.edge.TagDigest("app", "v1"); got == d.orph.Digest {
				t.Errorf("app:v1 moved back to the orphan; regmend never moves a tag")
			}

			out, code = regmendFrom(ctx, t, hosts, "heal", "--from", idxFrom, d.edge.Ref("multi"))
			if code != 0 {
				t.Fatalf("heal --from %s: exit %d:\n%s", idxFrom, code, out)
			}
			assertOnlyChildWritten(t, writes(d.edge.Requests()[before:]), d)
			if w := sourceWrites(); len(w) != 0 {
				t.Errorf("the source was written to: %v", w)
			}
			out, code = regmendFrom(ctx, t, hosts, "check", "--from", idxFrom, d.edge.Ref("multi"))
			if code != 0 {
				t.Errorf("check --from after the heal: exit %d, want 0:\n%s", code, out)
			}

			fresh := harness.StartContainerd(t, harness.ContainerdOptions{Name: "fresh"})
			fresh.UseRegistry(d.edge)
			mustPull(ctx, t, fresh, d.edge.Ref("app@"+d.orph.Digest.String()))
			mustPull(ctx, t, fresh, d.edge.Ref("multi:v1"))
			d.edge.GarbageCollect()
			if !d.edge.ManifestExists("app", d.orph.Digest) || !d.edge.ManifestExists("multi", d.child.Digest) {
				t.Error("a second GC reaped what the heal restored")
			}
		})
	}
}

// assertOnlyChildWritten: of the index, only the lost child and its blobs
// were written (the sibling and the index were present); the orphan's
// writes are its 4 nodes and the retention tag.
func assertOnlyChildWritten(t *testing.T, w []string, d *publisherDamage) {
	t.Helper()
	for _, x := range w {
		if strings.Contains(x, "/multi/manifests/") && !strings.HasSuffix(x, "/manifests/"+d.child.Digest.String()) {
			t.Errorf("wrote a manifest of multi that was present: %s", x)
		}
	}
	puts := 0
	for _, x := range w {
		if x == "PUT /v2/multi/manifests/"+d.child.Digest.String() {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("the lost child was PUT %d times, want once: %v", puts, w)
	}
}

// writeLayout writes the orphan and the intact index into an OCI image
// layout, named app-d1 and multi-v1 in index.json.
func writeLayout(t *testing.T, d *publisherDamage) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(d.orph.Image, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "app-d1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(d.idx.Index, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "multi-v1"})); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeIndex(ctx context.Context, t *testing.T, ref string, idx harness.PushedIndex) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx.Index, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// treeOf lists every file under dir with its size, mode and mtime.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(strings.TrimPrefix(p, dir) + " " + fi.Mode().String() + " " + fi.ModTime().String() + " " + strconv.FormatInt(fi.Size(), 10) + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
