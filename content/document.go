package content

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReadDocument reads a manifest or index from the store, bounded by
// MaxManifestSize, and verifies its bytes against desc.Digest: regmend pushes
// these exact bytes, so a mismatch must never get further than here.
func ReadDocument(ctx context.Context, p ctrcontent.Provider, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > MaxManifestSize {
		return nil, fmt.Errorf("document %s is %d bytes, over the %d byte limit: %w", desc.Digest, desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("local content %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	b, err := io.ReadAll(io.LimitReader(ctrcontent.NewReader(ra), MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read local content %s: %w", desc.Digest, err)
	}
	if int64(len(b)) != desc.Size || desc.Digest.Algorithm().FromBytes(b) != desc.Digest {
		return nil, fmt.Errorf("local content %s does not match its digest (%d bytes read): %w", desc.Digest, len(b), errdefs.ErrDataLoss)
	}
	return b, nil
}

// document is the union of the fields of an index and a manifest that say
// which one a blob is.
type document struct {
	MediaType string               `json:"mediaType,omitempty"`
	Config    *ocispec.Descriptor  `json:"config,omitempty"`
	Layers    []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests []ocispec.Descriptor `json:"manifests,omitempty"`
	FSLayers  json.RawMessage      `json:"fsLayers,omitempty"`
}

func parseDocument(b []byte, dgst digest.Digest) (document, error) {
	var doc document
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		return doc, fmt.Errorf("parse %s: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	if len(doc.FSLayers) != 0 {
		return doc, fmt.Errorf("%s is a Docker schema 1 manifest, which registries no longer accept: %w", dgst, errdefs.ErrNotImplemented)
	}
	return doc, nil
}

// ReadChildren returns the descriptors an index or manifest names, config
// first then layers for a manifest, in document order for an index.
func ReadChildren(ctx context.Context, p ctrcontent.Provider, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	b, err := ReadDocument(ctx, p, desc)
	if err != nil {
		return nil, err
	}
	doc, err := parseDocument(b, desc.Digest)
	if err != nil {
		return nil, err
	}
	switch KindOf(desc.MediaType) {
	case KindIndex:
		if doc.Config != nil || len(doc.Layers) != 0 {
			return nil, fmt.Errorf("%s: media type %s but the document is a manifest: %w", desc.Digest, desc.MediaType, errdefs.ErrInvalidArgument)
		}
		return doc.Manifests, nil
	case KindManifest:
		if len(doc.Manifests) != 0 || doc.Config == nil {
			return nil, fmt.Errorf("%s: media type %s but the document is not a manifest: %w", desc.Digest, desc.MediaType, errdefs.ErrInvalidArgument)
		}
		return append([]ocispec.Descriptor{*doc.Config}, doc.Layers...), nil
	}
	return nil, nil
}

// Describe makes a descriptor for a digest that no parent names (a root given
// by digest alone): size from the store, media type sniffed from the JSON, as
// containerd's Info does not record it.
func Describe(ctx context.Context, store Store, dgst digest.Digest) (ocispec.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("digest %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	info, err := store.Info(ctx, dgst)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("local content %s: %w", dgst, err)
	}
	desc := ocispec.Descriptor{Digest: dgst, Size: info.Size}
	b, err := ReadDocument(ctx, store, desc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc.MediaType, err = MediaTypeOf(b, dgst)
	return desc, err
}

// MediaTypeOf sniffs the media type of a manifest or index document: its
// mediaType field, else its shape ("manifests" for an index, "config" for a
// manifest).
func MediaTypeOf(b []byte, dgst digest.Digest) (string, error) {
	doc, err := parseDocument(b, dgst)
	if err != nil {
		return "", err
	}
	mt := doc.MediaType
	switch {
	case mt != "":
	case len(doc.Manifests) != 0:
		mt = ocispec.MediaTypeImageIndex
	case doc.Config != nil:
		mt = ocispec.MediaTypeImageManifest
	}
	if !KindOf(mt).IsManifest() {
		return "", fmt.Errorf("local content %s is not a manifest or index (media type %q): %w", dgst, mt, errdefs.ErrInvalidArgument)
	}
	return mt, nil
}
