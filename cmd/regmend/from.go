package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
)

// fromFlag is --from, shared by heal and check.
func fromFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "from", Usage: "read the image from `SPEC` instead of containerd: an OCI image layout or another registry (" + source.Forms + "); repeatable: each blob from the first that holds it, the root from the first that resolves, among those naming an image when any does"}
}

// tagFlags are heal's --tag and --force-tag.
func tagFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tag", Usage: "with --from: once healed, bind `NAME` at the destination to the root (an existing tag elsewhere is refused; no retention tag is needed then)"},
		&cli.BoolFlag{Name: "force-tag", Usage: "with --tag: move the tag when it points at another digest"},
	}
}

// parseDest parses the destination of a heal or check --from:
// REGISTRY/REPO. The root is what --from names, so a tag or digest here is
// a usage error.
func parseDest(raw string) (imageRef, error) {
	ref, err := parseRef(raw)
	if err != nil {
		return ref, err
	}
	if ref.Tag != "" || ref.Digest != "" {
		return ref, usageError("destination %s: with --from name only REGISTRY/REPO (%s): the image is what --from names (heal --tag NAME binds a tag to it)", raw, ref.Name())
	}
	return ref, nil
}

// fromSources are the --from values opened, in the order given.
type fromSources struct {
	specs []string
	srcs  []source.Source
	refs  []string // what each spec names in its source
}

// openFrom opens each --from value. A value that does not parse or names
// nothing that exists (a directory that is no layout) is a usage error.
func openFrom(ctx context.Context, specs []string, rem *registry.Remote, dest imageRef) (*fromSources, error) {
	f := &fromSources{}
	for _, spec := range specs {
		src, ref, err := source.Open(ctx, spec, rem, source.WithMountInto(dest.Registry))
		if err != nil {
			code := exitError
			if errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) {
				code = exitUsage
			}
			return nil, &exitCode{code: code, err: err} // Open names the spec

		}
		f.specs, f.srcs, f.refs = append(f.specs, spec), append(f.srcs, src), append(f.refs, ref)
	}
	return f, nil
}

// store is what the heal reads: the one source, or every source tried in
// the order given for each blob.
func (f *fromSources) store() source.Source {
	if len(f.srcs) == 1 {
		return f.srcs[0]
	}
	return source.List(f.srcs...)
}

// String lists the sources as given.
func (f *fromSources) String() string { return strings.Join(f.specs, ", ") }

// target resolves the root in dest: what the first source that holds its
// own name resolves it to. When any --from names an image (NAME, TAG or
// DIGEST), only those may choose the root; the rest lend blobs, so
// `--from oci:a --from oci:b:v1` heals b's v1, not a's only image. A
// source that fails otherwise than by not holding it stops the search, so
// a registry down never silently hands the choice of root to the next
// source (source.List.Resolve stops likewise).
func (f *fromSources) target(ctx context.Context, dest imageRef) (heal.Target, error) {
	named := slices.ContainsFunc(f.refs, func(r string) bool { return r != "" })
	var absent []string
	for i, s := range f.srcs {
		if named && f.refs[i] == "" {
			continue // lends blobs only
		}
		root, err := s.Resolve(ctx, f.refs[i])
		switch {
		case err == nil:
			return heal.Target{Registry: dest.Registry, Repository: dest.Repository, Root: root}, nil
		case errdefs.IsNotFound(err):
			absent = append(absent, err.Error())
		case errdefs.IsInvalidArgument(err): // a layout of several images and no name
			return heal.Target{}, &exitCode{code: exitUsage, err: fmt.Errorf("--from %s: %w", f.specs[i], err)}
		default:
			return heal.Target{}, fmt.Errorf("--from %s: %w", f.specs[i], err)
		}
	}
	return heal.Target{}, fmt.Errorf("no --from source holds the image (%s): %w", strings.Join(absent, "; "), errdefs.ErrNotFound)
}
