package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver"
)

// node is this node's containerd, which regmend only reads.
type node struct {
	client *client.Client
	ns     string
}

// connect dials containerd and returns ctx carrying the namespace.
func connect(ctx context.Context, cmd *cli.Command) (*node, context.Context, error) {
	return dial(ctx, cmd.String(flagAddress), cmd.String(flagNamespace))
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
	return &node{client: c, ns: ns}, namespaces.WithNamespace(ctx, ns), nil
}

func (n *node) Close() error { return n.client.Close() }

func (n *node) store() content.Store { return n.client.ContentStore() }

func (n *node) images() images.Store { return n.client.ImageService() }

// remote builds registry access from the global flags.
func remote(cmd *cli.Command, opts ...resolver.RemoteOption) (*resolver.Remote, error) {
	base := []resolver.RemoteOption{resolver.WithHostsDir(cmd.String(flagHostsDir))}
	if f := cmd.String(flagAuthFile); f != "" {
		base = append(base, resolver.WithAuthFile(f))
	}
	return resolver.NewRemote(append(base, opts...)...)
}

// imageRef is a parsed registry/repo[:tag][@digest].
type imageRef struct {
	raw, registry, repo string
	spec                reference.Spec
}

func parseRef(raw string) (imageRef, error) {
	spec, err := reference.Parse(raw)
	if err != nil {
		return imageRef{}, usageError("image reference %q: %v (want registry/repo@digest or registry/repo:tag)", raw, err)
	}
	host := spec.Hostname()
	repo := strings.TrimPrefix(spec.Locator, host+"/")
	// reference.Parse cleans the path ("a//b", "./app"); a name that
	// changes under cleaning is not the one the user meant.
	if locator, _, _ := strings.Cut(raw, "@"); strings.TrimSuffix(locator, ":"+tagOf(locator)) != spec.Locator {
		return imageRef{}, usageError("image reference %q: repository %q is not a clean name", raw, strings.TrimPrefix(locator, host+"/"))
	}
	if repo == spec.Locator || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return imageRef{}, usageError("image reference %q: name the registry host (e.g. edge:5000/app@sha256:...)", raw)
	}
	if err := resolver.ValidateRepository(repo); err != nil {
		return imageRef{}, &exitCode{code: exitUsage, err: err}
	}
	if spec.Digest() != "" {
		if err := spec.Digest().Validate(); err != nil {
			return imageRef{}, usageError("image reference %q: digest: %v", raw, err)
		}
	}
	return imageRef{raw: raw, registry: host, repo: repo, spec: spec}, nil
}

// tagOf returns the tag of a name without digest: what follows the last
// colon after the last slash.
func tagOf(name string) string {
	i := strings.LastIndexByte(name, ':')
	if i < strings.LastIndexByte(name, '/') || i < 0 {
		return ""
	}
	return name[i+1:]
}

// targets resolves a reference to what to heal. A tag names the local image
// record's target. A digest is re-resolved through the local indexes that
// reference it (pulled from the same repository), so a lost child is healed
// through its index; a digest nothing references is its own root.
func (n *node) targets(ctx context.Context, ref imageRef) ([]resolver.Target, error) {
	target := func(root ocispec.Descriptor) resolver.Target {
		return resolver.Target{Registry: ref.registry, Repository: ref.repo, Root: root}
	}
	if d := ref.spec.Digest(); d != "" {
		roots, err := content.Roots(ctx, n.store(), n.client.ContentStore(), n.images(), ref.registry, ref.repo, d)
		if err != nil {
			return nil, fmt.Errorf("%s in containerd namespace %s: %w", ref.raw, n.ns, err)
		}
		out := make([]resolver.Target, 0, len(roots))
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
	return []resolver.Target{target(img.Target)}, nil
}
