package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/resolver/registry"
)

// Forms lists the --from values Open accepts, for help and errors.
const Forms = "oci:DIR, oci:DIR:NAME, oci:DIR@sha256:..., REGISTRY/REPO, REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."

// Open opens the source spec names (the CLI's --from) and returns it with
// the reference spec gives within it ("" when it names none):
//
//   - oci:DIR, oci:DIR:NAME, oci:DIR@DIGEST: the OCI image layout in DIR
//     (Layout), NAME an index.json ref.name (or containerd's image name,
//     which holds ':' itself). DIR may hold ':' and '@', so the split
//     looks at the disk: what follows "oci:" is DIR whole when it is a
//     directory holding oci-layout; else it is split at its last '@' when
//     what follows is a valid digest; else at the last ':' whose prefix is
//     a directory holding oci-layout (the last ':' first, so "oci:d:v1" is
//     NAME v1 of d).
//   - REGISTRY/REPO[:TAG][@DIGEST]: that repository of another registry,
//     read through remote (NewRegistry, with opts), parsed by package
//     imageref: the registry must be named (a '.' or ':' or localhost),
//     nothing is normalised. A digest is the reference when both are given.
//
// A spec of neither form is an error wrapping errdefs.ErrInvalidArgument
// naming it and the accepted forms.
func Open(ctx context.Context, spec string, remote *registry.Remote, opts ...RegistryOption) (Source, string, error) {
	if rest, ok := strings.CutPrefix(spec, "oci:"); ok {
		dir, ref, err := splitLayout(spec, rest)
		if err != nil {
			return nil, "", err
		}
		l, err := Layout(dir)
		if err != nil {
			return nil, "", fmt.Errorf("--from %q: %w", spec, err)
		}
		return l, ref, nil
	}
	if isDir(spec) {
		return nil, "", badSpec(spec, "a directory: write oci:"+spec+" for an image layout")
	}
	if strings.Contains(spec, "://") || !strings.Contains(spec, "/") {
		return nil, "", badSpec(spec, "neither oci:DIR nor REGISTRY/REPO")
	}
	ref, err := imageref.Parse(spec)
	if err != nil {
		return nil, "", badSpec(spec, err.Error())
	}
	src, err := NewRegistry(ctx, remote, ref.Registry, ref.Repository, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("--from %q: %w", spec, err)
	}
	if ref.Digest != "" {
		return src, ref.Digest.String(), nil
	}
	return src, ref.Tag, nil
}

func badSpec(spec, why string) error {
	return fmt.Errorf("--from %q: %s; want %s: %w", spec, why, Forms, errdefs.ErrInvalidArgument)
}

// splitLayout splits what follows "oci:" into the layout's directory and
// the reference within it (see Open).
func splitLayout(spec, rest string) (string, string, error) {
	if rest == "" {
		return "", "", badSpec(spec, "no directory after oci:")
	}
	if isLayout(rest) {
		return rest, "", nil
	}
	if i := strings.LastIndexByte(rest, '@'); i > 0 {
		if d, err := digest.Parse(rest[i+1:]); err == nil {
			return rest[:i], d.String(), nil
		}
	}
	for i := strings.LastIndexByte(rest, ':'); i > 0; i = strings.LastIndexByte(rest[:i], ':') {
		if dir, name := rest[:i], rest[i+1:]; name != "" && isLayout(dir) {
			return dir, name, nil
		}
	}
	return rest, "", nil // no layout: Layout says which file is missing
}

func isLayout(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile))
	return err == nil && fi.Mode().IsRegular()
}

func isDir(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}
