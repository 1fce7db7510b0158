package source

import (
	"context"
	"fmt"
	"strings"
	"sync"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ListSource tries its sources in order, blob by blob.
type ListSource struct {
	sources []Source
	mu      sync.Mutex
	from    map[digest.Digest]Source // which source's Info answered
}

// List returns sources tried in order for each blob: Info answers with the
// first source that holds it; a failure other than absence is kept and
// returned only if no later source holds the blob. ReaderAt reads from
// the source whose Info answered; Resolve takes the first source that
// resolves.
func List(sources ...Source) Source {
	return &ListSource{sources: sources, from: map[digest.Digest]Source{}}
}

// String lists the sources, in order.
func (l *ListSource) String() string {
	names := make([]string, len(l.sources))
	for i, s := range l.sources {
		names[i] = s.String()
	}
	return strings.Join(names, ", ")
}

// Info asks each source in turn.
func (l *ListSource) Info(ctx context.Context, dgst digest.Digest) (ctrcontent.Info, error) {
	var failed error
	for _, s := range l.sources {
		info, err := s.Info(ctx, dgst)
		switch {
		case err == nil:
			l.mu.Lock()
			l.from[dgst] = s
			l.mu.Unlock()
			return info, nil
		case !errdefs.IsNotFound(err) && failed == nil:
			failed = fmt.Errorf("%s: %w", s, err)
		}
	}
	if failed != nil {
		return ctrcontent.Info{}, failed
	}
	return ctrcontent.Info{}, fmt.Errorf("%s in none of %s: %w", dgst, l, errdefs.ErrNotFound)
}

// ReaderAt reads from the source whose Info answered for desc (asking
// Info first if none has).
func (l *ListSource) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	l.mu.Lock()
	s := l.from[desc.Digest]
	l.mu.Unlock()
	if s == nil {
		if _, err := l.Info(ctx, desc.Digest); err != nil {
			return nil, err
		}
		l.mu.Lock()
		s = l.from[desc.Digest]
		l.mu.Unlock()
	}
	return s.ReaderAt(ctx, desc)
}

// Resolve returns the first source's answer that is not a failure. When
// none resolves ref, a failure other than absence is returned first; else
// the absence, naming every source's answer.
func (l *ListSource) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	var failed error
	var absent []string
	for _, s := range l.sources {
		desc, err := s.Resolve(ctx, ref)
		switch {
		case err == nil:
			return desc, nil
		case errdefs.IsNotFound(err):
			absent = append(absent, err.Error())
		case failed == nil:
			failed = fmt.Errorf("%s: %w", s, err)
		}
	}
	if failed != nil {
		return ocispec.Descriptor{}, failed
	}
	return ocispec.Descriptor{}, fmt.Errorf("%q in none of %s (%s): %w", ref, l, strings.Join(absent, "; "), errdefs.ErrNotFound)
}
