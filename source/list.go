package source

import (
	"context"
	"fmt"
	"strings"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ListSource tries its sources in order, blob by blob. It remembers
// nothing between calls: a daemon's list lives as long as the daemon, and a
// map of which source held each digest would grow with every digest seen.
type ListSource struct {
	sources []Source
}

// List returns sources tried in order for each blob: Info and ReaderAt
// answer from the first source that holds it; a failure other than
// absence is kept and returned only if no later source holds the blob.
// Resolve takes the first source that resolves.
func List(sources ...Source) Source {
	return &ListSource{sources: sources}
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

// ReaderAt opens desc in the first source that holds it. Absence costs a
// source what its Info would (a stat, a metadata lookup, a HEAD or a GET
// answered 404), so no Info is asked first.
func (l *ListSource) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	var failed error
	for _, s := range l.sources {
		ra, err := s.ReaderAt(ctx, desc)
		switch {
		case err == nil:
			return ra, nil
		case !errdefs.IsNotFound(err) && failed == nil:
			failed = fmt.Errorf("%s: %w", s, err)
		}
	}
	if failed != nil {
		return nil, failed
	}
	return nil, fmt.Errorf("%s in none of %s: %w", desc.Digest, l, errdefs.ErrNotFound)
}

// Resolve returns the first source's answer. A source that lacks ref
// (errdefs.ErrNotFound) or resolves no ref of that form
// (errdefs.ErrInvalidArgument: containerd with no image records, asked a
// name) passes to the next; any other failure stops the search, so a
// registry down never silently hands the choice of root to a later
// source. When none resolves ref, the error names every source's answer:
// not found when one looked, else invalid argument.
func (l *ListSource) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	var (
		answers []string
		absent  bool
	)
	for _, s := range l.sources {
		desc, err := s.Resolve(ctx, ref)
		switch {
		case err == nil:
			return desc, nil
		case errdefs.IsNotFound(err):
			absent = true
		case errdefs.IsInvalidArgument(err):
		default:
			return ocispec.Descriptor{}, fmt.Errorf("%s: %w", s, err)
		}
		answers = append(answers, err.Error())
	}
	if !absent {
		return ocispec.Descriptor{}, fmt.Errorf("%q resolves in none of %s (%s): %w", ref, l, strings.Join(answers, "; "), errdefs.ErrInvalidArgument)
	}
	return ocispec.Descriptor{}, fmt.Errorf("%q in none of %s (%s): %w", ref, l, strings.Join(answers, "; "), errdefs.ErrNotFound)
}
