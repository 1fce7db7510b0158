package source_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/source"
	"github.com/regmend/regmend/source/sourcetest"
)

func layoutOf(t *testing.T, f *sourcetest.Fixture) (string, *source.LayoutSource) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, f.Image, f.Name)
	l, err := source.Layout(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, l
}

// TestLayoutResolve: a layout's one image resolves by "", by its
// ref.name and by its digest, a child manifest by its digest (media type
// sniffed), and an absent name is NotFound naming what the layout holds.
func TestLayoutResolve(t *testing.T) {
	f := sourcetest.NewFixture(t, 256)
	dir, l := layoutOf(t, f)
	ctx := t.Context()
	root := f.Image.Root()
	for _, ref := range []string{"", "v1", root.Digest.String()} {
		d, err := l.Resolve(ctx, ref)
		if err != nil || d.Digest != root.Digest || d.MediaType != root.MediaType || d.Size != root.Size {
			t.Errorf("Resolve(%q) = %v, %v; want %s %s", ref, d.Digest, err, root.Digest, root.MediaType)
		}
	}
	child := f.Image.Children[1].Root()
	if d, err := l.Resolve(ctx, child.Digest.String()); err != nil || d.Digest != child.Digest || d.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("Resolve(child) = %+v, %v; want %s", d, err, child.Digest)
	}
	_, err := l.Resolve(ctx, "v2")
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"v2"`) || !strings.Contains(err.Error(), "v1") || !strings.Contains(err.Error(), dir) {
		t.Errorf("Resolve(v2) = %v, want not found naming v2, the layout and its names", err)
	}
	if _, err := l.Resolve(ctx, "sha256:../../etc/passwd"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Resolve(bad digest) = %v, want invalid argument", err)
	}
	if got := l.String(); got != "oci:"+dir {
		t.Errorf("String() = %q", got)
	}
}

// TestLayoutRefusesPathsOutsideBlobs: a digest-shaped name that is not a
// valid digest never reaches the file system.
func TestLayoutRefusesPathsOutsideBlobs(t *testing.T) {
	f := sourcetest.NewFixture(t, 64)
	dir, l := layoutOf(t, f)
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{"sha256:../../secret", digest.Digest("sha256:" + strings.Repeat("A", 64)), "md5:abc", "../secret", ""} {
		if _, err := l.Info(t.Context(), d); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Info(%q) = %v, want invalid argument", d, err)
		}
		if _, err := l.ReaderAt(t.Context(), ocispec.Descriptor{Digest: d}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ReaderAt(%q) = %v, want invalid argument", d, err)
		}
	}
}

// TestLayoutNeedsItsFiles: a directory without oci-layout or index.json,
// or with either invalid, is refused naming the file.
func TestLayoutNeedsItsFiles(t *testing.T) {
	f := sourcetest.NewFixture(t, 64)
	for _, c := range []struct {
		name, file, body string
		notFound         bool
	}{
		{"no oci-layout", ocispec.ImageLayoutFile, "", true},
		{"no index.json", ocispec.ImageIndexFile, "", true},
		{"bad oci-layout", ocispec.ImageLayoutFile, "{", false},
		{"other version", ocispec.ImageLayoutFile, `{"imageLayoutVersion":"2.0.0"}`, false},
		{"bad index.json", ocispec.ImageIndexFile, "[]", false},
		{"bad digest in index.json", ocispec.ImageIndexFile, `{"schemaVersion":2,"manifests":[{"digest":"sha256:../x","size":1}]}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := layoutOf(t, f)
			p := filepath.Join(dir, c.file)
			var err error
			if c.notFound {
				err = os.Remove(p)
			} else {
				err = os.WriteFile(p, []byte(c.body), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = source.Layout(dir)
			if c.notFound && !errdefs.IsNotFound(err) || !c.notFound && !errdefs.IsInvalidArgument(err) || err != nil && !strings.Contains(err.Error(), p) {
				t.Errorf("Layout = %v, want %s naming %s", err, map[bool]string{true: "not found", false: "invalid argument"}[c.notFound], p)
			}
		})
	}
	if _, err := source.Layout(filepath.Join(t.TempDir(), "absent")); !errdefs.IsNotFound(err) {
		t.Errorf("Layout(absent dir) = %v, want not found", err)
	}
}

// TestLayoutManyImagesNeedAName: with two images, "" lists both names.
func TestLayoutManyImagesNeedAName(t *testing.T) {
	a, b := sourcetest.NewFixture(t, 64), sourcetest.NewFixture(t, 64)
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, a.Image, "v1")
	sourcetest.WriteLayout(t, dir, b.Image, "v2")
	l, err := source.Layout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Resolve(t.Context(), ""); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "v1, v2") {
		t.Errorf(`Resolve("") = %v, want invalid argument listing v1, v2`, err)
	}
	if d, err := l.Resolve(t.Context(), "v2"); err != nil || d.Digest != b.Image.Desc.Digest {
		t.Errorf("Resolve(v2) = %v, %v", d.Digest, err)
	}
}

// TestLayoutEntryWithoutMediaType: an index.json entry that leaves out its
// media type resolves with the one its document has.
func TestLayoutEntryWithoutMediaType(t *testing.T) {
	f := sourcetest.NewFixture(t, 64)
	dir, _ := layoutOf(t, f)
	idx := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"digest":%q,"size":%d,"annotations":{%q:"v1"}}]}`, f.Image.Desc.Digest, f.Image.Desc.Size, ocispec.AnnotationRefName)
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageIndexFile), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := source.Layout(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"", "v1", f.Image.Desc.Digest.String()} {
		if d, err := l.Resolve(t.Context(), ref); err != nil || d.MediaType != ocispec.MediaTypeImageIndex {
			t.Errorf("Resolve(%q) = %q, %v; want %s", ref, d.MediaType, err, ocispec.MediaTypeImageIndex)
		}
	}
}
