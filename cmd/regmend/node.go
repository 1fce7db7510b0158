package main

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/client"
	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
)

// node is this node's containerd, which regmend only reads.
type node struct {
	client *client.Client
	ns     string
	cs     ctrcontent.Store // blobs from the content directory where readable
}

// connect dials containerd and returns ctx carrying the namespace.
func connect(ctx context.Context, cmd *cli.Command) (*node, context.Context, error) {
	n, ctx, err := dial(ctx, cmd.String(flagAddress), cmd.String(flagNamespace))
	if err == nil {
		n.readDirectly(ctx, cmd.String(flagContentDir))
	}
	return n, ctx, err
}

// readDirectly makes the node read blobs from containerd's content
// directory (setting: "" to ask containerd, a path, or content.DirNone),
// where this process can read it; otherwise through containerd's API.
func (n *node) readDirectly(ctx context.Context, setting string) {
	d, err := content.ReadDirectly(ctx, n.client.ContentStore(), n.client.IntrospectionService(), setting)
	switch {
	case err != nil:
		log.G(ctx).WithError(err).Info("reading blobs through containerd's API: its content directory is not readable here")
	case d != nil:
		n.cs = d
		log.G(ctx).WithField("dir", d.Root()).Debug("reading blobs from containerd's content directory")
	}
}

// dialTimeout bounds a connection attempt to containerd's local socket, and
// so the gRPC backoff after containerd restarts: containerd's default, 10s,
// would leave the mirror unable to read the store that long.
const dialTimeout = 2 * time.Second

func dial(ctx context.Context, addr, ns string) (*node, context.Context, error) {
	c, err := client.New(addr, client.WithDefaultNamespace(ns), client.WithTimeout(dialTimeout))
	if err != nil {
		return nil, ctx, fmt.Errorf("connect to containerd at %s: %w", addr, err)
	}
	return &node{client: c, ns: ns, cs: c.ContentStore()}, namespaces.WithNamespace(ctx, ns), nil
}

func (n *node) Close() error { return n.client.Close() }

func (n *node) store() content.Store { return n.cs }

func (n *node) images() images.Store { return n.client.ImageService() }

// local is what regmend reads of this node's containerd.
func (n *node) local() content.Local {
	return content.Local{Store: n.cs, Blobs: n.cs, Images: n.images()}
}

// remote builds registry access from the global flags.
func remote(cmd *cli.Command, opts ...registry.Option) (*registry.Remote, error) {
	base := []registry.Option{registry.WithHostsDir(cmd.String(flagHostsDir))}
	if f := cmd.String(flagAuthFile); f != "" {
		base = append(base, registry.WithAuthFile(f))
	}
	return registry.NewRemote(append(base, opts...)...)
}

// imageRef is a parsed registry/repo[:tag][@digest], as typed.
type imageRef struct {
	imageref.Ref
	raw string
}

// parseRef parses an image reference argument; a bad one is a usage error.
func parseRef(raw string) (imageRef, error) {
	ref, err := imageref.Parse(raw)
	if err != nil {
		return imageRef{}, &exitCode{code: exitUsage, err: err}
	}
	return imageRef{Ref: ref, raw: raw}, nil
}

// targets resolves a reference to what to heal. A tag names the local image
// record's target. A digest is re-resolved through the local indexes that
// reference it (pulled from the same repository), so a lost child is healed
// through its index; a digest nothing references is its own root, if the
// node pulled it from that repository (content.Local.Roots): anything else
// is a NotFound error saying so, never a push into another repository.
func (n *node) targets(ctx context.Context, ref imageRef) ([]heal.Target, error) {
	target := func(root ocispec.Descriptor) heal.Target {
		return heal.Target{Registry: ref.Registry, Repository: ref.Repository, Root: root}
	}
	if d := ref.Digest; d != "" {
		roots, err := n.local().Roots(ctx, ref.Registry, ref.Repository, d)
		if err != nil {
			return nil, fmt.Errorf("%s in containerd namespace %s: %w", ref.raw, n.ns, err)
		}
		out := make([]heal.Target, 0, len(roots))
		for _, r := range roots {
			out = append(out, target(r))
		}
		return out, nil
	}
	img, err := n.images().Get(ctx, ref.raw)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("no image %s in containerd namespace %s (name a digest, or pull the image first): %w", ref.raw, n.ns, err)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref.raw, err)
	}
	return []heal.Target{target(img.Target)}, nil
}
