package content

import (
	"context"
	"fmt"
	"strings"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// gcRefPrefix starts the labels by which containerd links a parent blob to
// its children (gc.ref.content.m.<i> for index entries, .config, .l.<i>).
// They are set before platform filtering, so they may name absent content.
const gcRefPrefix = "containerd.io/gc.ref.content."

// BlobLister lists the local blobs with their labels.
type BlobLister interface {
	Walk(ctx context.Context, fn ctrcontent.WalkFunc, filters ...string) error
}

// ImageLister lists containerd's image records.
type ImageLister interface {
	List(ctx context.Context, filters ...string) ([]images.Image, error)
}

// Parents returns the local blobs whose gc labels reference dgst: the
// indexes holding a manifest, the manifests holding a config or layer.
func Parents(ctx context.Context, blobs BlobLister, dgst digest.Digest) ([]ctrcontent.Info, error) {
	var out []ctrcontent.Info
	err := blobs.Walk(ctx, func(info ctrcontent.Info) error {
		for k, v := range info.Labels {
			if strings.HasPrefix(k, gcRefPrefix) && v == dgst.String() {
				out = append(out, info)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list local content: %w", err)
	}
	return out, nil
}

// Local is what regmend reads of a node's containerd: blobs with their
// labels, and image records. containerd's gRPC client and its in-process
// metadata stores both provide it.
type Local struct {
	Store  Store
	Blobs  BlobLister
	Images ImageLister // optional: roots are then described by sniffing
}

// Roots returns the topmost local descriptors whose closure holds dgst and
// that were pulled from repo of registry, following parents upward: a child
// manifest that a registry lost is healed through the index that names it.
// A parent pulled from elsewhere is not followed, so a heal never pushes an
// index into a repository it did not come from. An image record's target
// is preferred (it carries the media type); otherwise the media type is
// sniffed. dgst itself is the root when no such parent references it.
//
// Every root returned came from repo: its source labels (FromRepository)
// say so. When dgst has no parent from repo and its own labels do not name
// repo, Roots returns an error wrapping errdefs.ErrNotFound that says so
// (CheckSource), for what the node pulled from another repository must
// never be pushed into this one with the node's credentials, nor its blobs
// mounted across from there.
func (l Local) Roots(ctx context.Context, registry, repo string, dgst digest.Digest) ([]ocispec.Descriptor, error) {
	var (
		roots []ocispec.Descriptor
		seen  = map[digest.Digest]bool{}
	)
	var climb func(d digest.Digest, depth int) error
	climb = func(d digest.Digest, depth int) error {
		if seen[d] || depth > MaxDepth {
			return nil
		}
		seen[d] = true
		parents, err := Parents(ctx, l.Blobs, d)
		if err != nil {
			return err
		}
		followed := false
		for _, p := range parents {
			if !FromRepository(p.Labels, registry, repo) {
				continue
			}
			followed = true
			if err := climb(p.Digest, depth+1); err != nil {
				return err
			}
		}
		if followed {
			return nil
		}
		if depth == 0 {
			// A digest reached through a parent was reached because
			// its labels name repo; dgst itself is unchecked.
			info, err := l.Store.Info(ctx, d)
			if err != nil {
				return fmt.Errorf("local content %s: %w", d, err)
			}
			if err := CheckSource(info, registry, repo); err != nil {
				return err
			}
		}
		desc, err := l.describeRoot(ctx, d)
		if err != nil {
			return err
		}
		roots = append(roots, desc)
		return nil
	}
	if err := climb(dgst, 0); err != nil {
		return nil, err
	}
	return roots, nil
}

// describeRoot describes a digest named by no parent.
func (l Local) describeRoot(ctx context.Context, d digest.Digest) (ocispec.Descriptor, error) {
	if l.Images != nil {
		records, err := l.Images.List(ctx, "target.digest=="+d.String())
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("list local images: %w", err)
		}
		for _, img := range records {
			if img.Target.MediaType != "" {
				return img.Target, nil
			}
		}
	}
	return Describe(ctx, l.Store, d)
}
