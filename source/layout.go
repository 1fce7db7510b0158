package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
)

// AnnotationImageName is the annotation containerd's export (ctr image
// export) writes beside ref.name with the image's full name; a layout entry
// is found by either.
const AnnotationImageName = "io.containerd.image.name"

// LayoutSource reads an OCI image layout directory
// (https://github.com/opencontainers/image-spec/blob/main/image-layout.md):
// oci-layout, index.json and blobs/<algorithm>/<encoded>. It only opens
// files for reading.
type LayoutSource struct {
	dir   string
	index ocispec.Index
}

// Layout opens the image layout in dir: its oci-layout must name layout
// version 1.0.0 and its index.json must parse. Either missing is an error
// wrapping errdefs.ErrNotFound, either invalid one wrapping
// errdefs.ErrInvalidArgument, each naming the file. index.json is read once
// here: the layout is taken as it is when opened.
func Layout(dir string) (*LayoutSource, error) {
	if dir == "" {
		return nil, fmt.Errorf("image layout: no directory named: %w", errdefs.ErrInvalidArgument)
	}
	var marker ocispec.ImageLayout
	markerFile := filepath.Join(dir, ocispec.ImageLayoutFile)
	if err := readJSON(markerFile, &marker); err != nil {
		return nil, err
	}
	if marker.Version != ocispec.ImageLayoutVersion {
		return nil, fmt.Errorf("image layout: %s names version %q, want %q: %w", markerFile, marker.Version, ocispec.ImageLayoutVersion, errdefs.ErrInvalidArgument)
	}
	l := &LayoutSource{dir: dir}
	indexFile := filepath.Join(dir, ocispec.ImageIndexFile)
	if err := readJSON(indexFile, &l.index); err != nil {
		return nil, err
	}
	for i, m := range l.index.Manifests {
		if err := m.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("image layout: %s entry %d: digest %q: %v: %w", indexFile, i, m.Digest, err, errdefs.ErrInvalidArgument)
		}
	}
	return l, nil
}

// readJSON decodes the small JSON file path (at most MaxManifestSize).
func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("not an OCI image layout: %s does not exist: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, content.MaxManifestSize+1))
	if err != nil {
		return fmt.Errorf("image layout: read %s: %w", path, err)
	}
	if len(b) > content.MaxManifestSize {
		return fmt.Errorf("image layout: %s is over %d bytes: %w", path, content.MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("image layout: %s is not valid JSON: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// String names the layout as --from does: "oci:" and its directory.
func (l *LayoutSource) String() string { return "oci:" + l.dir }

// blobPath is where the layout keeps dgst. Only a valid digest of a known
// algorithm has a path, so no digest names a file outside blobs/.
func (l *LayoutSource) blobPath(dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil {
		return "", fmt.Errorf("%s: digest %q: %v: %w", l, dgst, err, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(l.dir, ocispec.ImageBlobsDir, dgst.Algorithm().String(), dgst.Encoded()), nil
}

// Info stats the blob's file: absent is errdefs.ErrNotFound. Its bytes are
// not read (the heal verifies them as it pushes).
func (l *LayoutSource) Info(ctx context.Context, dgst digest.Digest) (ctrcontent.Info, error) {
	p, err := l.blobPath(dgst)
	if err != nil {
		return ctrcontent.Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return ctrcontent.Info{}, l.statError(dgst, p, err)
	}
	if !fi.Mode().IsRegular() {
		return ctrcontent.Info{}, fmt.Errorf("%s: blob %s (%s) is not a regular file: %w", l, dgst, p, errdefs.ErrInvalidArgument)
	}
	return ctrcontent.Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime(), UpdatedAt: fi.ModTime()}, nil
}

func (l *LayoutSource) statError(dgst digest.Digest, p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob %s not in %s: %w", dgst, l, errdefs.ErrNotFound)
	}
	return fmt.Errorf("%s: blob %s: %w", l, dgst, err)
}

// ReaderAt opens the blob's file for reading.
func (l *LayoutSource) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	p, err := l.blobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, l.statError(desc.Digest, p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: blob %s: %w", l, desc.Digest, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: blob %s (%s) is not a regular file: %w", l, desc.Digest, p, errdefs.ErrInvalidArgument)
	}
	return &fileReaderAt{File: f, size: fi.Size()}, nil
}

// fileReaderAt is an open blob file. Reader lets content.Open stream it
// as it is asked, not in blocks (those are for reads over gRPC).
type fileReaderAt struct {
	*os.File
	size int64
}

func (r *fileReaderAt) Size() int64       { return r.size }
func (r *fileReaderAt) Reader() io.Reader { return io.NewSectionReader(r.File, 0, r.size) }

// Resolve finds ref in index.json: an entry whose ref.name (or containerd's
// image name annotation) is ref, or whose digest is ref. A digest index.json
// does not list is looked up among the blobs (a child manifest), its media
// type sniffed from its JSON. ref "" is the only entry when there is
// exactly one. A ref starting with a digest algorithm ("sha256:") is a
// digest, or invalid; any other is a name, which may hold ':' (containerd
// exports "edge:5000/app:v1").
func (l *LayoutSource) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	ms := l.index.Manifests
	switch {
	case ref == "" && len(ms) == 1:
		return l.typed(ctx, ms[0])
	case ref == "":
		return ocispec.Descriptor{}, fmt.Errorf("%s holds %d images (%s): name one (oci:DIR:NAME or oci:DIR@sha256:...): %w", l, len(ms), l.names(), errdefs.ErrInvalidArgument)
	case isDigestShaped(ref):
		d, err := digest.Parse(ref)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("%s: %q is not a valid digest: %v: %w", l, ref, err, errdefs.ErrInvalidArgument)
		}
		for _, m := range ms {
			if m.Digest == d {
				return l.typed(ctx, m)
			}
		}
		desc, err := content.Describe(ctx, l, d)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %s in %s: %w", d, l, err)
		}
		return desc, nil
	}
	var found []ocispec.Descriptor
	for _, key := range []string{ocispec.AnnotationRefName, AnnotationImageName} {
		for _, m := range ms {
			if m.Annotations[key] == ref {
				found = append(found, m)
			}
		}
		if len(found) > 0 {
			break
		}
	}
	switch {
	case len(found) == 0:
		return ocispec.Descriptor{}, fmt.Errorf("no image named %q in %s (it holds %s): %w", ref, l, l.names(), errdefs.ErrNotFound)
	case len(found) > 1:
		for _, f := range found[1:] {
			if f.Digest != found[0].Digest {
				return ocispec.Descriptor{}, fmt.Errorf("%s names %d different images %q (%s and %s): name one by digest: %w", l, len(found), ref, found[0].Digest, f.Digest, errdefs.ErrInvalidArgument)
			}
		}
	}
	return l.typed(ctx, found[0])
}

// typed fills in the media type an index.json entry left out (the spec
// requires it; some writers omit it) from the document itself, so the
// heal walks it as the manifest or index it is.
func (l *LayoutSource) typed(ctx context.Context, desc ocispec.Descriptor) (ocispec.Descriptor, error) {
	if desc.MediaType != "" {
		return desc, nil
	}
	d, err := content.Describe(ctx, l, desc.Digest)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: entry %s has no media type: %w", l, desc.Digest, err)
	}
	desc.MediaType = d.MediaType
	return desc, nil
}

// isDigestShaped reports whether ref starts with a digest algorithm
// ("sha256:"): it is then a digest or an error, never a name.
func isDigestShaped(ref string) bool {
	alg, _, ok := strings.Cut(ref, ":")
	return ok && digest.Algorithm(alg).Available()
}

// names lists index.json's entries for an error: each one's name, or its
// digest when it has none.
func (l *LayoutSource) names() string {
	if len(l.index.Manifests) == 0 {
		return "no images"
	}
	var out []string
	for _, m := range l.index.Manifests {
		n := m.Annotations[ocispec.AnnotationRefName]
		if n == "" {
			n = m.Annotations[AnnotationImageName]
		}
		if n == "" {
			n = "unnamed " + m.Digest.String()
		}
		out = append(out, n)
	}
	return strings.Join(out, ", ")
}
