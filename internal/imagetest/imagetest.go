// Package imagetest builds image fixtures for tests: random manifests and
// indexes held in memory, written into a real containerd content store with
// the labels containerd's pull sets, and pushed to a real registry over the
// distribution API. It is for tests only.
package imagetest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Blob is one piece of content with its descriptor.
type Blob struct {
	Desc ocispec.Descriptor
	Data []byte
}

// Object is a manifest or index with everything it references.
type Object struct {
	Blob
	Config   *Blob     // manifests
	Layers   []Blob    // manifests
	Children []*Object // indexes
}

// Media types a fixture is written with.
type Format int

// Formats.
const (
	OCI Format = iota
	Docker
)

// Manifest makes an image manifest with a config for platform and layers
// random blobs of size bytes each.
func Manifest(t testing.TB, f Format, platform ocispec.Platform, layers int, size int) *Object {
	t.Helper()
	cfgType, layerType, mfType := ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageManifest
	if f == Docker {
		cfgType, layerType, mfType = images.MediaTypeDockerSchema2Config, images.MediaTypeDockerSchema2LayerGzip, images.MediaTypeDockerSchema2Manifest
	}
	o := &Object{}
	var diffIDs []digest.Digest
	for range layers {
		b := make([]byte, size)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		o.Layers = append(o.Layers, NewBlob(layerType, b))
		diffIDs = append(diffIDs, digest.FromBytes(b))
	}
	cfg := ocispec.Image{Platform: platform, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}}
	cb := NewBlob(cfgType, mustJSON(t, cfg))
	o.Config = &cb
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mfType, Config: cb.Desc}
	for _, l := range o.Layers {
		m.Layers = append(m.Layers, l.Desc)
	}
	o.Blob = NewBlob(mfType, mustJSON(t, m))
	o.Desc.Platform = &platform
	return o
}

// Rebuild re-encodes a manifest after its config or layer descriptors were
// changed (to make an unusual fixture).
func Rebuild(t testing.TB, o *Object) *Object {
	t.Helper()
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: o.Desc.MediaType, Config: o.Config.Desc}
	for _, l := range o.Layers {
		m.Layers = append(m.Layers, l.Desc)
	}
	c := *o
	c.Blob = NewBlob(o.Desc.MediaType, mustJSON(t, m))
	c.Desc.Platform = o.Desc.Platform
	return &c
}

// Index makes an index of children, each entry carrying its platform.
func Index(t testing.TB, f Format, children ...*Object) *Object {
	t.Helper()
	mt := ocispec.MediaTypeImageIndex
	if f == Docker {
		mt = images.MediaTypeDockerSchema2ManifestList
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt}
	for _, c := range children {
		idx.Manifests = append(idx.Manifests, c.Desc)
	}
	return &Object{Blob: NewBlob(mt, mustJSON(t, idx)), Children: children}
}

// NewBlob describes data.
func NewBlob(mediaType string, data []byte) Blob {
	return Blob{Desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}
}

// Root returns the descriptor a registry or image record names the object
// by (without the platform an index entry adds).
func (o *Object) Root() ocispec.Descriptor {
	d := o.Desc
	d.Platform = nil
	return d
}

// Blobs returns the object's content leaves first: layers and config, then
// manifests, then the index.
func (o *Object) Blobs() []Blob {
	var out []Blob
	for _, c := range o.Children {
		out = append(out, c.Blobs()...)
	}
	out = append(out, o.Layers...)
	if o.Config != nil {
		out = append(out, *o.Config)
	}
	return append(out, o.Blob)
}

// refLabels are the gc.ref labels containerd puts on a parent blob.
func (o *Object) refLabels() map[string]string {
	l := map[string]string{}
	for i, c := range o.Children {
		l[fmt.Sprintf("containerd.io/gc.ref.content.m.%d", i)] = c.Desc.Digest.String()
	}
	if o.Config != nil {
		l["containerd.io/gc.ref.content.config"] = o.Config.Desc.Digest.String()
	}
	for i, c := range o.Layers {
		l[fmt.Sprintf("containerd.io/gc.ref.content.l.%d", i)] = c.Desc.Digest.String()
	}
	return l
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Platform parses "os/arch".
func Platform(os, arch string) ocispec.Platform { return ocispec.Platform{OS: os, Architecture: arch} }
