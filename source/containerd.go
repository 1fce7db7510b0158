package source

import (
	"context"
	"fmt"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
)

// ImageGetter finds an image record by name: containerd's image store
// (the gRPC client's ImageService(), the metadata store) satisfies it.
type ImageGetter interface {
	Get(ctx context.Context, name string) (images.Image, error)
}

// ContainerdSource is the node's containerd content store, as heals read
// it today. It exposes only the store's reads.
type ContainerdSource struct {
	store  content.Store // unexported: a store's writes stay out of reach
	images ImageGetter
}

// ContainerdOption configures a ContainerdSource.
type ContainerdOption func(*ContainerdSource)

// WithImages resolves names through containerd's image records (full
// names, "edge:5000/app:v1"). Without it only digests resolve.
func WithImages(imgs ImageGetter) ContainerdOption {
	return func(c *ContainerdSource) { c.images = imgs }
}

// NewContainerd returns the source reading store: containerd's local
// store, its gRPC client's ContentStore(), or content.Dir over either.
func NewContainerd(store content.Store, opts ...ContainerdOption) *ContainerdSource {
	c := &ContainerdSource{store: store}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Info asks the store.
func (c *ContainerdSource) Info(ctx context.Context, dgst digest.Digest) (ctrcontent.Info, error) {
	return c.store.Info(ctx, dgst)
}

// ReaderAt opens the blob in the store.
func (c *ContainerdSource) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	return c.store.ReaderAt(ctx, desc)
}

// String is "containerd".
func (c *ContainerdSource) String() string { return "containerd" }

// Resolve resolves a digest the store holds (size from Info, media type
// sniffed from the document), or a name among containerd's image records
// (WithImages). Which roots a heal may take from the node (their source
// labels) is not decided here but by content.Local.Roots.
func (c *ContainerdSource) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	if d, err := digest.Parse(ref); err == nil {
		desc, err := content.Describe(ctx, c.store, d)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %s in containerd: %w", d, err)
		}
		return desc, nil
	}
	if c.images == nil || ref == "" {
		return ocispec.Descriptor{}, fmt.Errorf("containerd: resolve %q: name a digest (sha256:...): %w", ref, errdefs.ErrInvalidArgument)
	}
	img, err := c.images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return ocispec.Descriptor{}, fmt.Errorf("no image %q in containerd: %w", ref, errdefs.ErrNotFound)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("containerd image %q: %w", ref, err)
	}
	return img.Target, nil
}
