package sourcetest

import (
	"bytes"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
)

// Damage is what a fixture's blob suffers in its source.
type Damage int

// Kinds of damage.
const (
	// Corrupt flips a byte: same size, wrong digest.
	Corrupt Damage = iota
	// Short cuts the blob to half its bytes (a registry: its body ends
	// early though its headers announce every byte).
	Short
)

func (d Damage) String() string {
	if d == Short {
		return "short"
	}
	return "corrupt"
}

// Fixture is the image a conformance run writes into its source: a
// multi-arch OCI index (linux/amd64, linux/arm64) with two layers per
// platform, named Name.
type Fixture struct {
	Image *imagetest.Object
	Name  string // the name the source holds the index by: "v1"
	// Damage is set by the opener: it damages blob d in the source as
	// it is when called.
	Damage func(t *testing.T, d digest.Digest, how Damage)
	// Changes is set by the opener: it lists what changed in the source
	// since the opener wrote it (files, or writes a registry took).
	Changes func(t *testing.T) []string
}

// NewFixture makes a fresh image: random layers of size bytes.
func NewFixture(t testing.TB, size int) *Fixture {
	t.Helper()
	amd64, arm64 := imagetest.Platform("linux", "amd64"), imagetest.Platform("linux", "arm64")
	idx := imagetest.Index(t, imagetest.OCI,
		imagetest.Manifest(t, imagetest.OCI, amd64, 2, size),
		imagetest.Manifest(t, imagetest.OCI, arm64, 2, size))
	return &Fixture{Image: idx, Name: "v1"}
}

// Blobs returns every blob of the image, leaves first, each once.
func (f *Fixture) Blobs() []imagetest.Blob { return unique(f.Image.Blobs()) }

// Layer returns the image's first layer, the blob the suite damages.
func (f *Fixture) Layer() imagetest.Blob { return f.Image.Children[0].Layers[0] }

func unique(bs []imagetest.Blob) []imagetest.Blob {
	seen := map[digest.Digest]bool{}
	var out []imagetest.Blob
	for _, b := range bs {
		if !seen[b.Desc.Digest] {
			seen[b.Desc.Digest] = true
			out = append(out, b)
		}
	}
	return out
}

// WriteLayout writes o into a new OCI image layout at dir with
// go-containerregistry's layout writer, the root named name in index.json
// (org.opencontainers.image.ref.name). Blobs in skip are left out. A
// layout already at dir gains the image.
func WriteLayout(t testing.TB, dir string, o *imagetest.Object, name string, skip ...digest.Digest) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		p, err = layout.Write(dir, empty.Index)
	}
	if err != nil {
		t.Fatal(err)
	}
	skipped := map[digest.Digest]bool{}
	for _, d := range skip {
		skipped[d] = true
	}
	for _, b := range unique(o.Blobs()) {
		if skipped[b.Desc.Digest] {
			continue
		}
		h, err := v1.NewHash(b.Desc.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WriteBlob(h, io.NopCloser(bytes.NewReader(b.Data))); err != nil {
			t.Fatal(err)
		}
	}
	root := o.Root()
	h, _ := v1.NewHash(root.Digest.String())
	desc := v1.Descriptor{MediaType: types.MediaType(root.MediaType), Size: root.Size, Digest: h}
	if name != "" {
		desc.Annotations = map[string]string{ocispec.AnnotationRefName: name}
	}
	if err := p.AppendDescriptor(desc); err != nil {
		t.Fatal(err)
	}
}
