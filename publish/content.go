package publish

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	regcontent "github.com/regmend/regmend/content"
)

// store exposes a go-containerregistry image or index as the content store
// the heal engine reads (content.Store): every manifest, config and layer
// of the closure by digest. Manifests and configs are the bytes
// RawManifest and RawConfigFile return (small, and held by the image
// anyway); a layer is opened from Layer.Compressed when read, and
// streamed.
type store struct {
	blobs map[digest.Digest]blob
	now   time.Time
}

type blob struct {
	size int64
	open func() (io.ReadCloser, error)
}

var _ regcontent.Store = (*store)(nil)

// maxNodes bounds the closure walked, as content.Walk bounds it.
const maxNodes = regcontent.MaxNodes

// indexStore walks ii once and returns its store and root descriptor.
func indexStore(ii v1.ImageIndex) (*store, ocispec.Descriptor, error) {
	s := &store{blobs: map[digest.Digest]blob{}, now: time.Now()}
	raw, err := ii.RawManifest()
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("index manifest: %w", err)
	}
	mt, err := ii.MediaType()
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("index media type: %w", err)
	}
	if !mt.IsIndex() {
		return nil, ocispec.Descriptor{}, fmt.Errorf("index media type %q: not an index: %w", mt, errdefs.ErrInvalidArgument)
	}
	root := rootDescriptor(mt, raw)
	if err := s.addIndex(ii, root, 0); err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return s, root, nil
}

// imageStore walks img once and returns its store and root descriptor.
func imageStore(img v1.Image) (*store, ocispec.Descriptor, error) {
	s := &store{blobs: map[digest.Digest]blob{}, now: time.Now()}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("image manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("image media type: %w", err)
	}
	if !mt.IsImage() {
		return nil, ocispec.Descriptor{}, fmt.Errorf("image media type %q: not an OCI or Docker schema 2 manifest: %w", mt, errdefs.ErrInvalidArgument)
	}
	root := rootDescriptor(mt, raw)
	if err := s.addImage(img, root); err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return s, root, nil
}

// rootDescriptor describes the bytes that will be pushed, whatever Digest()
// says: the registry names a manifest by the hash of its bytes.
func rootDescriptor(mt types.MediaType, raw []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: string(mt), Digest: digest.FromBytes(raw), Size: int64(len(raw))}
}

// addDoc records a manifest, index or config held in memory, after
// checking that its bytes are what its parent names: such a mismatch is a
// bug of the image, named here rather than found by the registry.
func (s *store) addDoc(desc ocispec.Descriptor, raw []byte) error {
	if got := desc.Digest.Algorithm().FromBytes(raw); got != desc.Digest || int64(len(raw)) != desc.Size {
		return fmt.Errorf("%s %s: its bytes are %s (%d bytes), not the %d its parent names: %w",
			desc.MediaType, desc.Digest, got, len(raw), desc.Size, errdefs.ErrInvalidArgument)
	}
	if len(s.blobs) >= maxNodes {
		return fmt.Errorf("image has more than %d blobs: %w", maxNodes, errdefs.ErrInvalidArgument)
	}
	s.blobs[desc.Digest] = blob{size: desc.Size, open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}}
	return nil
}

func (s *store) addIndex(ii v1.ImageIndex, desc ocispec.Descriptor, depth int) error {
	if _, ok := s.blobs[desc.Digest]; ok {
		return nil
	}
	if depth >= regcontent.MaxDepth {
		return fmt.Errorf("index %s nested deeper than %d: %w", desc.Digest, regcontent.MaxDepth, errdefs.ErrInvalidArgument)
	}
	raw, err := ii.RawManifest()
	if err != nil {
		return fmt.Errorf("index %s: %w", desc.Digest, err)
	}
	if err := s.addDoc(desc, raw); err != nil {
		return err
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return fmt.Errorf("index %s: %w", desc.Digest, err)
	}
	for _, c := range im.Manifests {
		cd := descriptor(c)
		switch {
		case c.MediaType.IsIndex():
			child, err := ii.ImageIndex(c.Digest)
			if err != nil {
				return fmt.Errorf("index %s: child index %s: %w", desc.Digest, c.Digest, err)
			}
			if err := s.addIndex(child, cd, depth+1); err != nil {
				return err
			}
		case c.MediaType.IsImage():
			child, err := ii.Image(c.Digest)
			if err != nil {
				return fmt.Errorf("index %s: child image %s: %w", desc.Digest, c.Digest, err)
			}
			if err := s.addImage(child, cd); err != nil {
				return err
			}
		default:
			// A blob the index names directly (an artifact, which
			// remote.WriteIndex writes from the index's Layer): the heal
			// engine asks about and pushes only the blobs of manifests, so
			// it would be left out silently. Refuse it instead.
			return fmt.Errorf("index %s: child %s of media type %s is neither an image nor an index; publish pushes only those: %w",
				desc.Digest, c.Digest, c.MediaType, errdefs.ErrNotImplemented)
		}
	}
	return nil
}

func (s *store) addImage(img v1.Image, desc ocispec.Descriptor) error {
	if _, ok := s.blobs[desc.Digest]; ok {
		return nil
	}
	raw, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("image %s: %w", desc.Digest, err)
	}
	if err := s.addDoc(desc, raw); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("image %s: %w", desc.Digest, err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("image %s: config: %w", desc.Digest, err)
	}
	if err := s.addDoc(descriptor(m.Config), cfg); err != nil {
		return fmt.Errorf("image %s: config: %w", desc.Digest, err)
	}
	for _, l := range m.Layers {
		ld := descriptor(l)
		if images.IsNonDistributable(ld.MediaType) {
			continue // never pushed, as remote.Write by default
		}
		if _, ok := s.blobs[ld.Digest]; ok {
			continue
		}
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return fmt.Errorf("image %s: layer %s: %w", desc.Digest, l.Digest, err)
		}
		if err := s.addLayer(ld, layer); err != nil {
			return err
		}
	}
	return nil
}

// addLayer records a layer without reading it: its bytes are checked
// against its digest as they stream to the registry.
func (s *store) addLayer(desc ocispec.Descriptor, l v1.Layer) error {
	if len(s.blobs) >= maxNodes {
		return fmt.Errorf("image has more than %d blobs: %w", maxNodes, errdefs.ErrInvalidArgument)
	}
	s.blobs[desc.Digest] = blob{size: desc.Size, open: l.Compressed}
	return nil
}

// descriptor converts a go-containerregistry descriptor.
func descriptor(d v1.Descriptor) ocispec.Descriptor {
	out := ocispec.Descriptor{
		MediaType:    string(d.MediaType),
		Digest:       digest.Digest(d.Digest.String()),
		Size:         d.Size,
		URLs:         d.URLs,
		Annotations:  d.Annotations,
		ArtifactType: d.ArtifactType,
	}
	if p := d.Platform; p != nil {
		out.Platform = &ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion, OSFeatures: p.OSFeatures}
	}
	return out
}

// Info implements content.InfoProvider: errdefs.ErrNotFound for a digest
// outside the image.
func (s *store) Info(_ context.Context, d digest.Digest) (ctrcontent.Info, error) {
	b, ok := s.blobs[d]
	if !ok {
		return ctrcontent.Info{}, fmt.Errorf("%s is not part of the image: %w", d, errdefs.ErrNotFound)
	}
	return ctrcontent.Info{Digest: d, Size: b.size, CreatedAt: s.now, UpdatedAt: s.now}, nil
}

// ReaderAt implements content.Provider: a reader that streams the blob.
func (s *store) ReaderAt(_ context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	b, ok := s.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("%s is not part of the image: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return &streamReaderAt{size: b.size, open: b.open}, nil
}
