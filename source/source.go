package source

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
)

// Source is content a heal reads from.
type Source interface {
	// Store is what the heal engine reads: Info (errdefs.ErrNotFound means
	// absent) and ReaderAt.
	content.Store
	// Resolve returns the root descriptor ref names in this source: ref is
	// a name (a tag; in a layout, index.json's
	// org.opencontainers.image.ref.name) or a digest "sha256:...". Absent
	// is an error wrapping errdefs.ErrNotFound naming what was looked for
	// (and, for a layout, the names it holds).
	Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error)
	// String names the source as a user would: "oci:/path",
	// "edge:5000/app", "containerd".
	String() string
}

// Compile-time checks that every kind is a Source.
var (
	_ Source = (*LayoutSource)(nil)
	_ Source = (*RegistrySource)(nil)
	_ Source = (*ContainerdSource)(nil)
	_ Source = (*ListSource)(nil)
)
