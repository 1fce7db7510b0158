package sourcetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/source"
)

// Opener writes img into a fresh source of its kind and returns it. It
// sets img.Damage and img.Changes, and may rename img.Name to the name its
// kind of source holds the index by.
type Opener func(t *testing.T, img *Fixture) source.Source

// Run asserts that the sources open makes behave as a heal needs: each
// subtest opens a source of its own over a fresh image.
func Run(t *testing.T, open Opener) {
	t.Run("Closure", func(t *testing.T) { testClosure(t, open) })
	t.Run("Absent", func(t *testing.T) { testAbsent(t, open) })
	t.Run("Resolve", func(t *testing.T) { testResolve(t, open) })
	t.Run("Heal", func(t *testing.T) { testHeal(t, open) })
	for _, c := range []struct {
		name string
		blob func(f *Fixture) imagetest.Blob
		how  Damage
	}{
		{"CorruptLayer", (*Fixture).Layer, Corrupt},
		{"ShortLayer", (*Fixture).Layer, Short},
		{"CorruptManifest", func(f *Fixture) imagetest.Blob { return f.Image.Children[0].Blob }, Corrupt},
	} {
		t.Run(c.name, func(t *testing.T) { testDamaged(t, open, c.blob, c.how) })
	}
}

// Context is the context the suite reads with: namespaced, as containerd's
// stores want, which other sources ignore.
func Context(t *testing.T) context.Context {
	return namespaces.WithNamespace(t.Context(), "regmend-test")
}

func opened(t *testing.T, open Opener, size int) (*Fixture, source.Source) {
	t.Helper()
	f := NewFixture(t, size)
	src := open(t, f)
	if f.Damage == nil || f.Changes == nil {
		t.Fatal("the opener set no Damage or Changes hook")
	}
	return f, src
}

// testClosure: every node is found with its size, reads back whole, in
// pieces at offsets, and across its end; the walk finds the whole closure;
// nothing in the source changed.
func testClosure(t *testing.T, open Opener) {
	f, src := opened(t, open, 96<<10)
	ctx := Context(t)
	for _, b := range f.Blobs() {
		info, err := src.Info(ctx, b.Desc.Digest)
		if err != nil || info.Size != b.Desc.Size || info.Digest != b.Desc.Digest {
			t.Errorf("Info(%s) = %d bytes %s, %v; want %d bytes", b.Desc.Digest, info.Size, info.Digest, err, b.Desc.Size)
			continue
		}
		readBack(t, ctx, src, b)
	}
	c, err := content.Walk(ctx, src, f.Image.Root())
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	nodes := c.Nodes()
	if len(nodes) != len(f.Blobs()) {
		t.Errorf("Walk found %d nodes, want %d", len(nodes), len(f.Blobs()))
	}
	for _, n := range nodes {
		if !n.Present || n.Err != nil {
			t.Errorf("Walk: %s %s present %v, err %v", n.Kind, n.Digest, n.Present, n.Err)
		}
	}
	if ch := f.Changes(t); len(ch) > 0 {
		t.Errorf("reading changed the source: %v", ch)
	}
}

// readBack reads b through src whole, sequentially in small pieces, at
// offsets, and across its end.
func readBack(t *testing.T, ctx context.Context, src source.Source, b imagetest.Blob) {
	t.Helper()
	ra, err := src.ReaderAt(ctx, b.Desc)
	if err != nil {
		t.Errorf("ReaderAt(%s): %v", b.Desc.Digest, err)
		return
	}
	defer ra.Close()
	if ra.Size() != b.Desc.Size {
		t.Errorf("ReaderAt(%s).Size() = %d, want %d", b.Desc.Digest, ra.Size(), b.Desc.Size)
	}
	whole, err := io.ReadAll(io.NewSectionReader(ra, 0, b.Desc.Size))
	if err != nil || !bytes.Equal(whole, b.Data) {
		t.Errorf("%s read whole: %d bytes, %v; want its %d bytes", b.Desc.Digest, len(whole), err, b.Desc.Size)
	}
	size := b.Desc.Size
	for _, off := range []int64{size / 2, 1, size - 7, 0} {
		p := make([]byte, min(5000, size-off))
		if n, err := ra.ReadAt(p, off); n != len(p) || err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) || !bytes.Equal(p[:n], b.Data[off:off+int64(n)]) {
			t.Errorf("%s ReadAt(%d bytes, %d) = %d, %v, or other bytes", b.Desc.Digest, len(p), off, n, err)
		}
	}
	p := make([]byte, 20)
	n, err := ra.ReadAt(p, size-5)
	if n != 5 || !errors.Is(err, io.EOF) || !bytes.Equal(p[:5], b.Data[size-5:]) {
		t.Errorf("%s ReadAt across the end = %d, %v; want its last 5 bytes and io.EOF", b.Desc.Digest, n, err)
	}
	if n, err := ra.ReadAt(p, size); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("%s ReadAt at the end = %d, %v; want 0, io.EOF", b.Desc.Digest, n, err)
	}
}

// testAbsent: a digest the source lacks is errdefs.ErrNotFound to Info,
// ReaderAt and Resolve, as is a name it lacks.
func testAbsent(t *testing.T, open Opener) {
	_, src := opened(t, open, 64)
	ctx := Context(t)
	b := make([]byte, 32)
	rand.Read(b)
	d := digest.FromBytes(b)
	if _, err := src.Info(ctx, d); !errdefs.IsNotFound(err) {
		t.Errorf("Info(absent) = %v, want not found", err)
	}
	if ra, err := src.ReaderAt(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: 32}); !errdefs.IsNotFound(err) {
		if ra != nil {
			ra.Close()
		}
		t.Errorf("ReaderAt(absent) = %v, want not found", err)
	}
	if _, err := src.Resolve(ctx, d.String()); !errdefs.IsNotFound(err) {
		t.Errorf("Resolve(absent digest) = %v, want not found", err)
	}
	if _, err := src.Resolve(ctx, "no-such-tag"); !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
		t.Errorf("Resolve(absent name) = %v, want not found (or invalid argument where names do not resolve)", err)
	}
}

// testResolve: the index resolves by name and by digest, a child manifest
// by digest, each with its media type and size.
func testResolve(t *testing.T, open Opener) {
	f, src := opened(t, open, 64)
	ctx := Context(t)
	root := f.Image.Root()
	child := f.Image.Children[1].Root()
	for _, c := range []struct {
		ref  string
		want ocispec.Descriptor
	}{{f.Name, root}, {root.Digest.String(), root}, {child.Digest.String(), child}} {
		d, err := src.Resolve(ctx, c.ref)
		if err != nil || d.Digest != c.want.Digest || d.Size != c.want.Size || d.MediaType != c.want.MediaType {
			t.Errorf("Resolve(%q) = %s %d %q, %v; want %s %d %q", c.ref, d.Digest, d.Size, d.MediaType, err, c.want.Digest, c.want.Size, c.want.MediaType)
		}
	}
	if ch := f.Changes(t); len(ch) > 0 {
		t.Errorf("resolving changed the source: %v", ch)
	}
	if src.String() == "" {
		t.Error("String() is empty")
	}
}

// contains reports whether d is among bs.
func contains(bs []imagetest.Blob, d digest.Digest) bool {
	return slices.ContainsFunc(bs, func(b imagetest.Blob) bool { return b.Desc.Digest == d })
}
