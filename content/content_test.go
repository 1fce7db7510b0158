package content_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
)

func TestMain(m *testing.M) {
	_ = log.SetLevel("error") // the local store warns that tmpfs lacks fsverity
	os.Exit(m.Run())
}

var (
	amd64 = imagetest.Platform("linux", "amd64")
	arm64 = imagetest.Platform("linux", "arm64")
	ctx   = context.Background()
)

func TestWalkPartialIndex(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	mine := imagetest.Manifest(t, imagetest.OCI, amd64, 2, 64)
	theirs := imagetest.Manifest(t, imagetest.OCI, arm64, 2, 64)
	idx := imagetest.Index(t, imagetest.OCI, mine, theirs)
	imagetest.WriteLocal(t, cs, "edge:5000", "app", idx, theirs.Desc.Digest)

	c, err := content.Walk(ctx, cs, idx.Root())
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Root.Kind; k != content.KindIndex || len(c.Root.Children) != 2 {
		t.Fatalf("root kind %s with %d children", k, len(c.Root.Children))
	}
	got := map[digest.Digest]*content.Node{}
	for _, n := range c.Nodes() {
		got[n.Digest] = n
	}
	if len(got) != 6 { // index, two manifests, config, two layers
		t.Errorf("closure has %d nodes, want 6", len(got))
	}
	if n := got[theirs.Desc.Digest]; n == nil || n.Present || len(n.Children) != 0 || n.Err != nil {
		t.Errorf("absent child: %+v, want present=false without children or error", n)
	}
	if n := got[mine.Desc.Digest]; n == nil || !n.Present || len(n.Children) != 3 || n.Platform == nil || n.Platform.Architecture != "amd64" {
		t.Errorf("held child: %+v, want present with config, 2 layers and its platform", n)
	}
	if n := got[mine.Config.Desc.Digest]; n == nil || n.Kind != content.KindConfig {
		t.Errorf("config node: %+v", n)
	}
	// Leaves first: every node after its children.
	pos := map[digest.Digest]int{}
	for i, n := range c.Nodes() {
		pos[n.Digest] = i
	}
	for _, n := range c.Nodes() {
		for _, ch := range n.Children {
			if pos[ch.Digest] > pos[n.Digest] {
				t.Errorf("%s listed before its child %s", n.Digest, ch.Digest)
			}
		}
	}
}

func TestWalkNestedIndexAndDockerTypes(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	inner := imagetest.Index(t, imagetest.Docker, imagetest.Manifest(t, imagetest.Docker, amd64, 1, 32))
	outer := imagetest.Index(t, imagetest.OCI, inner)
	imagetest.WriteLocal(t, cs, "edge", "app", outer)
	c, err := content.Walk(ctx, cs, outer.Root())
	if err != nil {
		t.Fatal(err)
	}
	kinds := ""
	for _, n := range c.Nodes() {
		kinds += n.Kind.String() + " "
	}
	if want := "config layer manifest index index "; kinds != want {
		t.Errorf("kinds leaves first = %q, want %q", kinds, want)
	}
}

func TestWalkMarksUnreadableDocuments(t *testing.T) {
	cs, root := imagetest.LocalStore(t)
	good := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 32)
	bad := imagetest.NewBlob(ocispec.MediaTypeImageManifest, []byte(`{"config": not json`))
	idx := &imagetest.Object{Blob: imagetest.NewBlob(ocispec.MediaTypeImageIndex, []byte(fmt.Sprintf(
		`{"schemaVersion":2,"manifests":[%s,%s]}`, descJSON(good.Desc), descJSON(bad.Desc))))}
	imagetest.WriteLocal(t, cs, "edge", "app", good)
	write(t, cs, bad)
	write(t, cs, idx.Blob)
	corrupt := imagetest.Manifest(t, imagetest.OCI, arm64, 1, 32)
	imagetest.WriteLocal(t, cs, "edge", "app", corrupt)
	imagetest.Corrupt(t, root, corrupt.Desc.Digest)

	for _, c := range []struct {
		name string
		desc ocispec.Descriptor
		is   func(error) bool
	}{
		{"malformed json", bad.Desc, errdefs.IsInvalidArgument},
		{"bytes do not match digest", corrupt.Root(), errdefs.IsDataLoss},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, err := content.Walk(ctx, cs, c.desc)
			if err != nil {
				t.Fatalf("walk failed instead of marking the node: %v", err)
			}
			if !c.is(cl.Root.Err) {
				t.Errorf("node error = %v", cl.Root.Err)
			}
		})
	}
}

func TestWalkMarksForeignLayers(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	m := imagetest.Manifest(t, imagetest.Docker, amd64, 1, 32)
	m.Layers[0].Desc.MediaType = images.MediaTypeDockerSchema2LayerForeignGzip
	m = imagetest.Rebuild(t, m)
	imagetest.WriteLocal(t, cs, "edge", "app", m)
	c, err := content.Walk(ctx, cs, m.Root())
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Root.Children[1]; !l.Foreign {
		t.Errorf("foreign layer not marked: %+v", l)
	}
}

func TestWalkBoundsDepth(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	o := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 16)
	for range content.MaxDepth + 2 {
		o = imagetest.Index(t, imagetest.OCI, o)
	}
	imagetest.WriteLocal(t, cs, "edge", "app", o)
	c, err := content.Walk(ctx, cs, o.Root())
	if err != nil {
		t.Fatal(err)
	}
	var deepest *content.Node
	for n := c.Root; len(n.Children) > 0; n = n.Children[0] {
		deepest = n.Children[0]
	}
	if deepest == nil || !errdefs.IsInvalidArgument(deepest.Err) {
		t.Errorf("an index nested past MaxDepth was followed: %+v", deepest)
	}
}

func TestDescribeSniffsMediaType(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	for _, f := range []imagetest.Format{imagetest.OCI, imagetest.Docker} {
		m := imagetest.Manifest(t, f, amd64, 1, 16)
		idx := imagetest.Index(t, f, m)
		imagetest.WriteLocal(t, cs, "edge", "app", idx)
		for _, o := range []*imagetest.Object{m, idx} {
			d, err := content.Describe(ctx, cs, o.Desc.Digest)
			if err != nil || d.MediaType != o.Desc.MediaType || d.Size != o.Desc.Size {
				t.Errorf("Describe(%s) = %+v, %v; want media type %s", o.Desc.Digest, d, err, o.Desc.MediaType)
			}
		}
	}
	layer := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 16).Layers[0]
	write(t, cs, layer)
	if _, err := content.Describe(ctx, cs, layer.Desc.Digest); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Describe of a layer: %v, want invalid argument", err)
	}
	if _, err := content.Describe(ctx, cs, digest.FromString("absent")); !errdefs.IsNotFound(err) {
		t.Errorf("Describe of absent content: %v, want not found", err)
	}
}

func TestRootsClimbsThroughIndexFromSameRepo(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	child := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 16)
	idx := imagetest.Index(t, imagetest.OCI, child, imagetest.Manifest(t, imagetest.OCI, arm64, 1, 16))
	imagetest.WriteLocal(t, cs, "edge:5000", "app", idx)
	orphan := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 16)
	imagetest.WriteLocal(t, cs, "edge:5000", "app", orphan)
	// The child was also pulled by digest from another repository.
	alsoFrom(t, cs, child.Desc.Digest, "edge", "app,other")

	for _, c := range []struct {
		name, repo string
		d          digest.Digest
		want       digest.Digest
	}{
		{"child climbs to its index", "app", child.Desc.Digest, idx.Desc.Digest},
		{"layer climbs to the index", "app", child.Layers[0].Desc.Digest, idx.Desc.Digest},
		{"orphan is its own root", "app", orphan.Desc.Digest, orphan.Desc.Digest},
		{"index from another repo is not followed", "other", child.Desc.Digest, child.Desc.Digest},
	} {
		t.Run(c.name, func(t *testing.T) {
			roots, err := content.Local{Store: cs, Blobs: cs}.Roots(ctx, "edge:5000", c.repo, c.d)
			if err != nil {
				t.Fatal(err)
			}
			if len(roots) != 1 || roots[0].Digest != c.want || roots[0].MediaType == "" {
				t.Errorf("roots = %+v, want %s", roots, c.want)
			}
		})
	}
}

// alsoFrom sets the source label of d for host to repos, as containerd
// does when the same blob is pulled from another repository too.
func alsoFrom(t *testing.T, cs ctrcontent.Store, d digest.Digest, host, repos string) {
	t.Helper()
	key := content.SourceLabelPrefix + host
	if _, err := cs.Update(ctx, ctrcontent.Info{Digest: d, Labels: map[string]string{key: repos}}, "labels."+key); err != nil {
		t.Fatal(err)
	}
}

func TestSources(t *testing.T) {
	labels := map[string]string{"containerd.io/distribution.source.edge": "app,team/app", "other": "x"}
	if got := content.Sources(labels, "edge:5000"); len(got) != 2 || got[1] != "team/app" {
		t.Errorf("Sources = %v", got)
	}
	if got := content.Sources(labels, "elsewhere"); got != nil {
		t.Errorf("Sources of another registry = %v", got)
	}
	if got := content.SourceAnnotations(labels); len(got) != 1 {
		t.Errorf("SourceAnnotations = %v", got)
	}
}

func descJSON(d ocispec.Descriptor) string {
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, d.MediaType, d.Digest, d.Size)
}

func write(t *testing.T, cs ctrcontent.Store, b imagetest.Blob) {
	t.Helper()
	if err := ctrcontent.WriteBlob(ctx, cs, b.Desc.Digest.String(), bytes.NewReader(b.Data), b.Desc); err != nil && !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
