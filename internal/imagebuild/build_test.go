package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fixture writes a fake binary per platform and a CA bundle; their bytes
// name what they stand for, so the test can tell them apart in the layer.
func fixture(t *testing.T) ([]Binary, string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bins := []Binary{
		{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Path: write("amd64", "regmend for amd64")},
		{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Path: write("arm64", "regmend for arm64")},
	}
	return bins, write("ca.crt", "-----BEGIN CERTIFICATE-----\n")
}

var created = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func build(t *testing.T, bins []Binary, ca string, extra ...Option) v1.ImageIndex {
	t.Helper()
	opts := append([]Option{WithCABundle(ca), WithCreated(created), WithVersion("v1.2.3"),
		WithRevision("abc123"), WithSource("https://example.com/regmend")}, extra...)
	idx, err := Build(bins, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestBuildIndexHasOnePlatformImagePerBinary(t *testing.T) {
	bins, ca := fixture(t)
	idx := build(t, bins, ca)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", m.MediaType)
	}
	wantAnns := map[string]string{AnnotationVersion: "v1.2.3", AnnotationRevision: "abc123", AnnotationSource: "https://example.com/regmend"}
	checkAnnotations(t, "index", m.Annotations, wantAnns)
	if len(m.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2", len(m.Manifests))
	}
	for i, d := range m.Manifests {
		b := bins[i]
		if d.Platform == nil || d.Platform.String() != b.Platform.String() {
			t.Errorf("entry %d platform %v, want %s", i, d.Platform, b.Platform.String())
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		mf, _ := img.Manifest()
		if mf.MediaType != types.OCIManifestSchema1 || mf.Config.MediaType != types.OCIConfigJSON {
			t.Errorf("%s: manifest %s, config %s: want OCI media types", b.Platform.String(), mf.MediaType, mf.Config.MediaType)
		}
		checkAnnotations(t, b.Platform.String()+" manifest", mf.Annotations, wantAnns)
		cf, _ := img.ConfigFile()
		if cf.Architecture != b.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, b.Platform.String())
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{BinaryPath}) {
			t.Errorf("entrypoint %q, want [%s]", cf.Config.Entrypoint, BinaryPath)
		}
		if !cf.Created.Time.Equal(created) {
			t.Errorf("config created %s, want %s", cf.Created.Time, created)
		}
		checkAnnotations(t, "config labels", cf.Config.Labels, wantAnns)
		checkRootFS(t, img, "regmend for "+b.Platform.Architecture)
	}
}

func checkAnnotations(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], v)
		}
	}
}

// checkRootFS asserts the image's only layer holds exactly the binary and
// the CA bundle (and their directories), owned by root, dated created.
func checkRootFS(t *testing.T, img v1.Image, binary string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want one", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s", mt)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	type entry struct {
		mode int64
		body string
	}
	got := map[string]entry{}
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		got[h.Name] = entry{h.Mode, string(body)}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(created) {
			t.Errorf("%s: uid %d gid %d uname %q mtime %s; want root and %s", h.Name, h.Uid, h.Gid, h.Uname, h.ModTime, created)
		}
	}
	want := []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "usr/", "usr/bin/", "usr/bin/regmend"}
	if !slices.Equal(names, want) {
		t.Fatalf("layer files %q, want %q", names, want)
	}
	if e := got["usr/bin/regmend"]; e.mode != 0o755 || e.body != binary {
		t.Errorf("usr/bin/regmend: mode %o body %q, want 755 %q", e.mode, e.body, binary)
	}
	if e := got["etc/ssl/certs/ca-certificates.crt"]; e.mode != 0o644 || !strings.HasPrefix(e.body, "-----BEGIN") {
		t.Errorf("CA bundle: mode %o body %q", e.mode, e.body)
	}
}

func TestBuildIsReproducible(t *testing.T) {
	bins, ca := fixture(t)
	a, _ := build(t, bins, ca).Digest()
	b, _ := build(t, bins, ca).Digest()
	if a != b {
		t.Errorf("same inputs, digests %s and %s", a, b)
	}
	c, _ := build(t, bins, ca, WithCreated(created.Add(time.Second))).Digest()
	if c == a {
		t.Errorf("a different creation time gave the same digest %s", a)
	}
}

func TestBuildRefuses(t *testing.T) {
	bins, ca := fixture(t)
	for _, tc := range []struct {
		name string
		bins []Binary
		opts []Option
	}{
		{"no binaries", nil, nil},
		{"platform twice", []Binary{bins[0], bins[0]}, nil},
		{"missing binary", []Binary{{Platform: bins[0].Platform, Path: filepath.Join(t.TempDir(), "nope")}}, nil},
		{"missing CA bundle", bins, []Option{WithCABundle(filepath.Join(t.TempDir(), "nope"))}},
		{"empty CA bundle path", bins, []Option{WithCABundle("")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Option{WithCABundle(ca)}, tc.opts...)
			if _, err := Build(tc.bins, opts...); err == nil {
				t.Errorf("Build succeeded, want an error")
			}
		})
	}
}

// TestLayoutThenPush is `make image` then `make image-push`: the layout read
// back is the index built, and a registry receives all of it.
func TestLayoutThenPush(t *testing.T) {
	bins, ca := fixture(t)
	idx := build(t, bins, ca)
	want, _ := idx.Digest()
	dir := filepath.Join(t.TempDir(), "image")
	if err := WriteLayout(dir, idx, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := back.Digest(); got != want {
		t.Fatalf("layout holds %s, built %s", got, want)
	}
	index, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if !bytes.Contains(index, []byte(`"org.opencontainers.image.ref.name": "v1.2.3"`)) {
		t.Errorf("index.json does not name the version:\n%s", index)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/regmend:v1.2.3"
	ctx := context.Background()
	pushed, err := Push(ctx, back, ref, true)
	if err != nil {
		t.Fatal(err)
	}
	if pushed != want {
		t.Errorf("pushed %s, want %s", pushed, want)
	}
	r, _ := name.ParseReference(ref, name.Insecure)
	got, err := remote.Index(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := got.IndexManifest()
	for _, d := range m.Manifests {
		img, err := got.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkRootFS(t, img, "regmend for "+d.Platform.Architecture)
	}
}

func TestReadLayoutRefusesAnImageLayout(t *testing.T) {
	if _, err := ReadLayout(t.TempDir()); err == nil {
		t.Error("ReadLayout of an empty directory succeeded")
	}
}
