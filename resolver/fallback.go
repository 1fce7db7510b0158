package resolver

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/resolver/heal"
)

// Healer heals a registry from local content: a *heal.Healer.
type Healer interface {
	Allowed(registry string) bool
	Heal(ctx context.Context, t heal.Target) (*heal.Result, error)
}

// HealingResolver is a remotes.Resolver for Go programs that pull with the
// containerd client. It behaves exactly like the resolver it wraps, except
// when the registry answers NotFound for a digest this node holds: then it
// heals the registry from the local store and resolves again, and if the
// registry still lacks it, resolves and fetches from the local store, so the
// pull succeeds either way.
type HealingResolver struct {
	inner  remotes.Resolver
	healer Healer
	local  content.Local
	deny   Denier // deny.go
}

var _ remotes.Resolver = (*HealingResolver)(nil)

// NewHealingResolver wraps inner (typically containerd's docker resolver).
// Heals go through healer, for the registries it allows; local is the
// node's content store and image records, which the lost digest is served
// from and re-resolved through (a lost child is healed through its index).
func NewHealingResolver(inner remotes.Resolver, healer Healer, local content.Local, opts ...Option) *HealingResolver {
	r := &HealingResolver{inner: inner, healer: healer, local: local}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Resolve resolves ref with the wrapped resolver, healing on NotFound. Only
// content the node pulled from ref's repository is healed into it or served
// (content.FromRepository, the mirror's rule); for any other the registry's
// NotFound stands, saying why. A reference regmend cannot parse is an
// errdefs.ErrInvalidArgument error.
func (r *HealingResolver) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	name, desc, err := r.inner.Resolve(ctx, ref)
	if err == nil || !errdefs.IsNotFound(err) {
		return name, desc, err
	}
	parsed, perr := imageref.Parse(ref)
	if perr != nil {
		return name, desc, fmt.Errorf("%w (and %w)", err, perr)
	}
	if parsed.Digest == "" {
		return name, desc, err // a tag must never resolve to local content
	}
	if derr := r.denied(parsed, parsed.Digest, err); derr != nil {
		return name, desc, derr
	}
	local, lerr := content.Describe(ctx, r.local.Store, parsed.Digest)
	if lerr != nil || !r.healer.Allowed(parsed.Registry) {
		return name, desc, err
	}
	if serr := r.fromRepository(ctx, parsed, parsed.Digest); serr != nil {
		return name, desc, fmt.Errorf("%w (not served from the local store: %w)", err, serr)
	}
	if herr := r.heal(ctx, parsed, local); herr != nil {
		log.G(ctx).WithError(herr).WithField("ref", ref).Warn("heal on not found failed; serving local content")
	} else if name, desc, err2 := r.inner.Resolve(ctx, ref); err2 == nil {
		return name, desc, nil
	}
	return ref, local, nil
}

func (r *HealingResolver) heal(ctx context.Context, ref imageref.Ref, local ocispec.Descriptor) error {
	roots, err := r.local.Roots(ctx, ref.Registry, ref.Repository, local.Digest)
	if err != nil {
		return err
	}
	for _, root := range roots {
		if _, err := r.healer.Heal(ctx, heal.Target{Registry: ref.Registry, Repository: ref.Repository, Root: root}); err != nil {
			return err
		}
	}
	return nil
}

// Fetcher returns the wrapped fetcher, falling back to the local store for
// content the registry does not have and the node pulled from ref's
// repository.
func (r *HealingResolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	f, err := r.inner.Fetcher(ctx, ref)
	if err != nil {
		return nil, err
	}
	parsed, perr := imageref.Parse(ref)
	return remotes.FetcherFunc(func(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
		rc, err := f.Fetch(ctx, desc)
		if err == nil || !errdefs.IsNotFound(err) {
			return rc, err
		}
		if perr != nil || r.fromRepository(ctx, parsed, desc.Digest) != nil {
			return nil, err
		}
		if derr := r.denied(parsed, desc.Digest, err); derr != nil {
			return nil, derr
		}
		local, lerr := content.Open(ctx, r.local.Store, desc)
		if lerr != nil {
			return nil, err
		}
		log.G(ctx).WithField("digest", desc.Digest).Debug("registry lacks content; serving it from the local store")
		return local, nil
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

// fromRepository says why d may not be served or healed under ref's
// repository, or nil when the node pulled it from there.
func (r *HealingResolver) fromRepository(ctx context.Context, ref imageref.Ref, d digest.Digest) error {
	info, err := r.local.Store.Info(ctx, d)
	if err != nil {
		return fmt.Errorf("local content %s: %w", d, err)
	}
	return content.CheckSource(info, ref.Registry, ref.Repository)
}
