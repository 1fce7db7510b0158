package resolver

import (
	"context"
	"fmt"
	"io"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
)

// HealingResolver is a remotes.Resolver for Go programs that pull with the
// containerd client. It behaves exactly like the resolver it wraps, except
// when the registry answers NotFound for a digest this node holds: then it
// heals the registry from the local store and resolves again, and if the
// registry still lacks it, resolves and fetches from the local store, so the
// pull succeeds either way.
type HealingResolver struct {
	inner  remotes.Resolver
	healer *Healer
	roots  RootFinder
}

var _ remotes.Resolver = (*HealingResolver)(nil)

// NewHealingResolver wraps inner (typically containerd's docker resolver).
// Heals go through healer, for registries its Remote allows; roots finds the
// index a lost child is healed through.
func NewHealingResolver(inner remotes.Resolver, healer *Healer, roots RootFinder) *HealingResolver {
	return &HealingResolver{inner: inner, healer: healer, roots: roots}
}

// Resolve resolves ref with the wrapped resolver, healing on NotFound.
func (r *HealingResolver) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	name, desc, err := r.inner.Resolve(ctx, ref)
	if err == nil || !errdefs.IsNotFound(err) {
		return name, desc, err
	}
	spec, perr := reference.Parse(ref)
	dgst := spec.Digest()
	if perr != nil || dgst == "" || dgst.Validate() != nil {
		return name, desc, err // a tag must never resolve to local content
	}
	registry := spec.Hostname()
	local, lerr := content.Describe(ctx, r.healer.store, dgst)
	if lerr != nil || !r.healer.remote.Allowed(registry) {
		return name, desc, err
	}
	if herr := r.heal(ctx, registry, spec, local); herr != nil {
		log.G(ctx).WithError(herr).WithField("ref", ref).Warn("heal on not found failed; serving local content")
	} else if name, desc, err2 := r.inner.Resolve(ctx, ref); err2 == nil {
		return name, desc, nil
	}
	return ref, local, nil
}

func (r *HealingResolver) heal(ctx context.Context, registry string, spec reference.Spec, local ocispec.Descriptor) error {
	repo := spec.Locator[len(registry)+1:]
	roots, err := r.roots.Roots(ctx, registry, repo, local.Digest)
	if err != nil {
		return err
	}
	for _, root := range roots {
		if _, err := r.healer.Heal(ctx, Target{Registry: registry, Repository: repo, Root: root}); err != nil {
			return err
		}
	}
	return nil
}

// Fetcher returns the wrapped fetcher, falling back to the local store for
// content the registry does not have.
func (r *HealingResolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	f, err := r.inner.Fetcher(ctx, ref)
	if err != nil {
		return nil, err
	}
	return remotes.FetcherFunc(func(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
		rc, err := f.Fetch(ctx, desc)
		if err == nil || !errdefs.IsNotFound(err) {
			return rc, err
		}
		ra, lerr := r.healer.store.ReaderAt(ctx, desc)
		if lerr != nil {
			return nil, err
		}
		log.G(ctx).WithField("digest", desc.Digest).Debug("registry lacks content; serving it from the local store")
		return struct {
			io.Reader
			io.Closer
		}{ctrcontent.NewReader(ra), ra}, nil
	}), nil
}

// Pusher returns the wrapped resolver's pusher.
func (r *HealingResolver) Pusher(ctx context.Context, ref string) (remotes.Pusher, error) {
	p, err := r.inner.Pusher(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("pusher for %s: %w", ref, err)
	}
	return p, nil
}
