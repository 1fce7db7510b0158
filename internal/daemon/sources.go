package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
)

// validateSources checks each of the sources setting's forms: oci:DIR or
// REGISTRY/REPO. A heal reads blobs from a source by digest, so one naming
// a tag or digest is refused rather than half obeyed. (Whether oci:DIR
// holds a layout is known when the daemon opens it.)
func validateSources(specs []string) error {
	for i, spec := range specs {
		bad := func(why string) error {
			return fmt.Errorf("sources[%d] %q: %s; want REGISTRY/REPO or oci:DIR: %w", i, spec, why, errdefs.ErrInvalidArgument)
		}
		if dir, ok := strings.CutPrefix(spec, "oci:"); ok {
			if dir == "" {
				return bad("no directory")
			}
			continue
		}
		ref, err := imageref.Parse(spec)
		switch {
		case err != nil:
			return bad(err.Error())
		case ref.Tag != "" || ref.Digest != "":
			return bad("a source is read by digest, name no tag or digest")
		}
	}
	return nil
}

// healStore is what the daemon's heals read: this node's store, then each
// configured source in order, for what the store lacks. Only heals read
// it: the mirror serves the node's store alone.
func healStore(ctx context.Context, cfg Config, node content.Store, remote *registry.Remote) (content.Store, error) {
	if len(cfg.Sources) == 0 {
		return node, nil
	}
	srcs := []source.Source{source.NewContainerd(node)}
	for i, spec := range cfg.Sources {
		var opts []source.RegistryOption
		// An upstream in a healed registry lets the heal mount its blobs
		// across instead of uploading them.
		if ref, err := imageref.Parse(spec); err == nil && slices.Contains(cfg.Registries, ref.Registry) {
			opts = append(opts, source.WithMountInto(ref.Registry))
		}
		src, ref, err := source.Open(ctx, spec, remote, opts...)
		if err != nil {
			return nil, fmt.Errorf("sources[%d]: %w", i, err)
		}
		if ref != "" {
			return nil, fmt.Errorf("sources[%d] %q names %q in it: a source is read by digest, name no image: %w", i, spec, ref, errdefs.ErrInvalidArgument)
		}
		srcs = append(srcs, newLastResort(src))
	}
	return source.List(srcs...), nil
}

// lastResort is a configured source as the daemon's heals read it: one
// that fails to answer (an upstream down) counts as not holding the blob,
// so a heal does what it would without the source (push what the node
// holds; the next sweep tries again) instead of failing whole. After a
// failure the source is skipped for sourceDownFor, logged once, so a heal
// of many nodes does not wait out the registry client's backoff for each
// of them. A cancelled heal's error is its own, passed on unchanged.
type lastResort struct {
	source.Source
	now func() time.Time

	mu    sync.Mutex
	until time.Time // skipped until then
}

// sourceDownFor is how long a failed source is skipped.
const sourceDownFor = 30 * time.Second

func newLastResort(src source.Source) *lastResort {
	return &lastResort{Source: src, now: time.Now}
}

func (l *lastResort) Info(ctx context.Context, dgst digest.Digest) (ctrcontent.Info, error) {
	if until, down := l.down(); down {
		return ctrcontent.Info{}, fmt.Errorf("heal source %s skipped until %s after it failed: %w", l, until.Format(time.RFC3339), errdefs.ErrNotFound)
	}
	info, err := l.Source.Info(ctx, dgst)
	if err == nil || errdefs.IsNotFound(err) || ctx.Err() != nil {
		return info, err
	}
	if until, first := l.markDown(); first {
		log.G(ctx).WithError(err).WithField("source", l.String()).WithField("digest", dgst).
			WithField("until", until.Format(time.RFC3339)).Warn("heal source did not answer; healing on without it, skipping it meanwhile")
	}
	return info, fmt.Errorf("%w (taken as absent: %w)", err, errdefs.ErrNotFound)
}

// down reports whether the source is being skipped, and until when.
func (l *lastResort) down() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until, l.now().Before(l.until)
}

// markDown skips the source for sourceDownFor; first is set for the
// failure that took it down (others, in flight with it, log nothing).
func (l *lastResort) markDown() (until time.Time, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	first = !now.Before(l.until)
	if first {
		l.until = now.Add(sourceDownFor)
	}
	return l.until, first
}
