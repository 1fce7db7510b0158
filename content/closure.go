package content

import (
	"context"
	"fmt"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store is the part of containerd's content store the closure walk reads:
// blob info (size, labels) and blob bytes. containerd's local store, the gRPC
// client's ContentStore() and the in-process metadata store all satisfy it.
type Store interface {
	ctrcontent.Provider
	ctrcontent.InfoProvider
}

// Kind is the role of a node in an image's closure.
type Kind int

// Kinds of node, from the root down.
const (
	KindUnknown Kind = iota
	KindIndex
	KindManifest
	KindConfig
	KindLayer
)

// String names the kind as reports print it: index, manifest, config,
// layer or blob.
func (k Kind) String() string {
	switch k {
	case KindIndex:
		return "index"
	case KindManifest:
		return "manifest"
	case KindConfig:
		return "config"
	case KindLayer:
		return "layer"
	}
	return "blob"
}

// IsManifest reports whether nodes of this kind are pushed to the registry's
// manifests endpoint (indexes and manifests) rather than as blobs.
func (k Kind) IsManifest() bool { return k == KindIndex || k == KindManifest }

// KindOf classifies a media type.
func KindOf(mediaType string) Kind {
	switch {
	case images.IsIndexType(mediaType):
		return KindIndex
	case images.IsManifestType(mediaType):
		return KindManifest
	case images.IsKnownConfig(mediaType):
		return KindConfig
	case images.IsLayerType(mediaType):
		return KindLayer
	}
	return KindUnknown
}

// Node is one descriptor of a closure.
type Node struct {
	// Descriptor as the parent names it: digest, size, media type, platform
	// (index entries) and annotations.
	ocispec.Descriptor
	Kind Kind
	// Present is true when the local content store holds the blob.
	Present bool
	// Foreign marks non-distributable layers: they are never pushed.
	Foreign bool
	// Labels are the local blob's containerd labels (nil when absent).
	Labels map[string]string
	// Children of an index or manifest, in document order. Empty when the
	// node is absent locally, since its document cannot be read.
	Children []*Node
	// Err says why a present manifest or index could not be read (bad JSON,
	// digest mismatch, too large). Such a node is reported, never pushed.
	Err error
}

// Closure is everything reachable from a root descriptor.
type Closure struct {
	Root *Node
}

// Nodes returns the closure's distinct nodes leaves first: every node comes
// after all of its children, so pushing in this order satisfies a registry's
// checks that a manifest's blobs and an index's children exist.
func (c *Closure) Nodes() []*Node {
	var (
		out  []*Node
		seen = map[string]bool{}
	)
	var visit func(n *Node)
	visit = func(n *Node) {
		if seen[n.Digest.String()] {
			return
		}
		seen[n.Digest.String()] = true
		for _, ch := range n.Children {
			visit(ch)
		}
		out = append(out, n)
	}
	visit(c.Root)
	return out
}

// Limits bound what a walk accepts from local content, so a malformed or
// hostile document cannot exhaust memory or recurse without end.
const (
	// MaxManifestSize is the largest index or manifest read, as containerd's
	// own fetcher limits manifests.
	MaxManifestSize = 4 << 20
	// MaxDepth is the deepest nesting of indexes followed.
	MaxDepth = 8
	// MaxNodes is the most descriptors one closure may hold.
	MaxNodes = 10000
)

// Walk builds the closure of root from the local store. Absent content is part
// of the result (partial content is normal: a node holds one platform of an
// index), as are documents that cannot be read (Node.Err). Only a failure of the
// store itself, or a closure beyond the limits, is an error.
func Walk(ctx context.Context, store Store, root ocispec.Descriptor) (*Closure, error) {
	w := walker{store: store, nodes: map[string]*Node{}}
	n, err := w.visit(ctx, root, 0)
	if err != nil {
		return nil, err
	}
	return &Closure{Root: n}, nil
}

type walker struct {
	store Store
	nodes map[string]*Node // one node per digest: shared layers appear once
	count int
}

func (w *walker) visit(ctx context.Context, desc ocispec.Descriptor, depth int) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n, ok := w.nodes[desc.Digest.String()]; ok {
		return n, nil
	}
	if w.count++; w.count > MaxNodes {
		return nil, fmt.Errorf("closure has more than %d descriptors: %w", MaxNodes, errdefs.ErrInvalidArgument)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("descriptor digest %q: %w", desc.Digest, errdefs.ErrInvalidArgument)
	}
	n := &Node{Descriptor: desc, Kind: KindOf(desc.MediaType), Foreign: images.IsNonDistributable(desc.MediaType)}
	w.nodes[desc.Digest.String()] = n

	info, err := w.store.Info(ctx, desc.Digest)
	switch {
	case errdefs.IsNotFound(err):
		return n, nil
	case err != nil:
		return nil, fmt.Errorf("local content %s: %w", desc.Digest, err)
	}
	n.Present, n.Labels = true, info.Labels
	if info.Size != desc.Size {
		n.Err = fmt.Errorf("local content %s is %d bytes, its descriptor says %d: %w", desc.Digest, info.Size, desc.Size, errdefs.ErrDataLoss)
		return n, nil
	}
	if !n.Kind.IsManifest() {
		return n, nil
	}
	if depth >= MaxDepth {
		n.Err = fmt.Errorf("%s %s nested deeper than %d: %w", n.Kind, desc.Digest, MaxDepth, errdefs.ErrInvalidArgument)
		return n, nil
	}
	children, err := ReadChildren(ctx, w.store, desc)
	if err != nil {
		if errdefs.IsNotFound(err) || errdefs.IsDataLoss(err) || errdefs.IsInvalidArgument(err) || errdefs.IsNotImplemented(err) {
			n.Err = err
			return n, nil
		}
		return nil, err
	}
	for _, c := range children {
		cn, err := w.visit(ctx, c, depth+1)
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, cn)
	}
	return n, nil
}
