package content_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
)

// childToken and sizeToken in a fuzzed root document are replaced by the
// digest and size of the fuzzed child document, so the fuzzer can build
// two-level closures whose descriptors match.
const (
	childToken = "$CHILD"
	sizeToken  = "$SIZE"
)

// FuzzDocument feeds arbitrary bytes, as local content, to everything that
// reads a manifest or index: MediaTypeOf, ReadChildren, Describe and Walk.
// None may panic; every failure must carry an errdefs class; a walk stays
// within MaxNodes and never follows an index past MaxDepth.
func FuzzDocument(f *testing.F) {
	mf := imagetest.Manifest(f, imagetest.OCI, amd64, 1, 16)
	idx := imagetest.Index(f, imagetest.OCI, mf)
	seeds := []struct {
		root, child   string
		mt, childMT   string
		childSizeDiff int64
	}{
		{string(mf.Data), "", ocispec.MediaTypeImageManifest, "", 0},
		{string(idx.Data), "", ocispec.MediaTypeImageIndex, "", 0},
		{`{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$CHILD","size":$SIZE}]}`,
			`{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:` + strings.Repeat("0", 64) + `"}]}`, ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, 0},
		{`{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$CHILD","size":$SIZE}]}`,
			`{"config":{"digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},"layers":[{"digest":"sha256:` + strings.Repeat("1", 64) + `","size":-5}]}`,
			ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, 0},
		{`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"$CHILD","size":$SIZE},{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"$CHILD","size":$SIZE}]}`,
			`{"manifests":[]}`, ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageIndex, 0},
		{`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"$CHILD","size":-1}]}`,
			`{"manifests":[]}`, ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageIndex, 0},
		{`{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$CHILD","size":0}]}`,
			`{"config":{"digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},"layers":[{"digest":"md5:d41d8cd98f00b204e9800998ecf8427e"}]}`,
			"", ocispec.MediaTypeImageManifest, 0},
		{`{"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$CHILD","size":0},"layers":null}`,
			`{}`, images.MediaTypeDockerSchema2Manifest, ocispec.MediaTypeImageConfig, 1},
		{`{"config": not json`, "", ocispec.MediaTypeImageManifest, "", 0},
		{`{"fsLayers":[{}],"schemaVersion":1}`, "", "", "", 0},
		{`{"mediaType":"application/vnd.oci.image.layer.v1.tar"}`, "", "", "", 0},
		{`[]`, "", ocispec.MediaTypeImageIndex, "", 0},
		{`{"manifests":[{"digest":"sha256:zz","size":1}]}`, "", ocispec.MediaTypeImageIndex, "", 0},
		{`{"manifests":[{"digest":"$CHILD","size":3,"mediaType":"application/vnd.oci.image.index.v1+json"},{"digest":"$CHILD","size":3,"mediaType":"application/vnd.oci.image.index.v1+json"}]}`,
			`{"manifests":[]}`, ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageIndex, 0},
		{"", "", "", "", 0},
		{"\x00\xff", "", ocispec.MediaTypeImageManifest, "", 0},
	}
	for _, s := range seeds {
		f.Add([]byte(s.root), []byte(s.child), s.mt, s.childMT, s.childSizeDiff)
	}
	cs := fuzzStore(f)
	f.Fuzz(func(t *testing.T, root, child []byte, mediaType, childMT string, childSizeDiff int64) {
		if len(root) > content.MaxManifestSize+16 || len(child) > content.MaxManifestSize+16 {
			t.Skip()
		}
		ctx := context.Background()
		childDesc := store(t, cs, child, childMT)
		childDesc.Size += childSizeDiff
		root = bytes.ReplaceAll(root, []byte(childToken), []byte(childDesc.Digest.String()))
		root = bytes.ReplaceAll(root, []byte(sizeToken), []byte(strconv.FormatInt(childDesc.Size, 10)))
		rootDesc := store(t, cs, root, mediaType)

		if mt, err := content.MediaTypeOf(root, rootDesc.Digest); err == nil {
			if !content.KindOf(mt).IsManifest() {
				t.Errorf("MediaTypeOf accepted %q, not a manifest or index type", mt)
			}
		} else {
			classified(t, "MediaTypeOf", err)
		}
		if d, err := content.Describe(ctx, cs, rootDesc.Digest); err == nil {
			if d.Size != int64(len(root)) || !content.KindOf(d.MediaType).IsManifest() {
				t.Errorf("Describe = %+v for %d bytes", d, len(root))
			}
		} else {
			classified(t, "Describe", err)
		}
		for _, d := range []ocispec.Descriptor{rootDesc, childDesc} {
			if children, err := content.ReadChildren(ctx, cs, d); err != nil {
				classified(t, "ReadChildren", err)
			} else if !content.KindOf(d.MediaType).IsManifest() && children != nil {
				t.Errorf("ReadChildren of a %q blob returned children", d.MediaType)
			}
		}
		c, err := content.Walk(ctx, cs, rootDesc)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("Walk failed with %v; only a bad descriptor or a closure past the limits may fail it", err)
			}
			return
		}
		nodes := c.Nodes()
		if len(nodes) > content.MaxNodes {
			t.Errorf("closure of %d nodes, over MaxNodes", len(nodes))
		}
		if nodes[len(nodes)-1] != c.Root {
			t.Error("the root is not last in leaves-first order")
		}
		for _, n := range nodes {
			if n.Err != nil {
				classified(t, "Walk node", n.Err)
				if len(n.Children) != 0 {
					t.Errorf("unreadable node %s has children", n.Digest)
				}
			}
			if len(n.Children) > 0 && (!n.Present || !n.Kind.IsManifest()) {
				t.Errorf("node %s (%s, present %v) has children", n.Digest, n.Kind, n.Present)
			}
		}
	})
}

// fuzzStore is a real local content store, in memory-backed /dev/shm when
// there is one: the store syncs every blob it commits, and on a busy disk
// that, not the code under test, would set the pace of fuzzing.
func fuzzStore(f *testing.F) ctrcontent.Store {
	dir, err := os.MkdirTemp("/dev/shm", "regmend-fuzz-")
	if err != nil {
		dir = f.TempDir()
	} else {
		f.Cleanup(func() { os.RemoveAll(dir) })
	}
	cs, err := local.NewStore(dir)
	if err != nil {
		f.Fatal(err)
	}
	return cs
}

// store writes b to the content store and describes it with mediaType.
func store(t *testing.T, cs ctrcontent.Store, b []byte, mediaType string) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := ctrcontent.WriteBlob(context.Background(), cs, d.Digest.String(), bytes.NewReader(b), d); err != nil && !errdefs.IsAlreadyExists(err) {
		t.Fatalf("write fuzz input: %v", err)
	}
	return d
}

// classified fails t unless err carries one of the errdefs classes a reader
// of local content may report.
func classified(t *testing.T, what string, err error) {
	t.Helper()
	for _, is := range []func(error) bool{errdefs.IsInvalidArgument, errdefs.IsDataLoss, errdefs.IsNotFound, errdefs.IsNotImplemented} {
		if is(err) {
			return
		}
	}
	t.Errorf("%s: unclassified error %v (%T)", what, err, errors.Unwrap(err))
}
