package content_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
)

// pluginsFunc adapts a function to content.PluginLister.
type pluginsFunc func(ctx context.Context, filters ...string) (*introspectionapi.PluginsResponse, error)

func (f pluginsFunc) Plugins(ctx context.Context, filters ...string) (*introspectionapi.PluginsResponse, error) {
	return f(ctx, filters...)
}

func TestContentDirAsksContainerd(t *testing.T) {
	answer := func(plugins ...*introspectionapi.Plugin) pluginsFunc {
		return func(_ context.Context, filters ...string) (*introspectionapi.PluginsResponse, error) {
			if len(filters) != 1 || filters[0] != "type==io.containerd.content.v1,id==content" {
				t.Errorf("filters %q, want the content plugin's", filters)
			}
			return &introspectionapi.PluginsResponse{Plugins: plugins}, nil
		}
	}
	content1 := &introspectionapi.Plugin{Type: "io.containerd.content.v1", ID: "content", Exports: map[string]string{"root": "/var/lib/containerd/io.containerd.content.v1.content"}}
	got, err := content.ContentDir(t.Context(), answer(content1))
	if err != nil || got != "/var/lib/containerd/io.containerd.content.v1.content" {
		t.Errorf("ContentDir = %q, %v; want the exported root", got, err)
	}
	if _, err := content.ContentDir(t.Context(), answer()); !errdefs.IsNotFound(err) {
		t.Errorf("no content plugin: err = %v, want not found", err)
	}
	down := pluginsFunc(func(context.Context, ...string) (*introspectionapi.PluginsResponse, error) {
		return nil, errdefs.ErrUnavailable
	})
	if _, err := content.ContentDir(t.Context(), down); !errdefs.IsUnavailable(err) {
		t.Errorf("containerd down: err = %v, want unavailable", err)
	}
}

// stored writes data into a fresh local store and returns the store, its
// directory and the blob's descriptor.
func stored(t *testing.T, data []byte) (ctrcontent.Store, string, ocispec.Descriptor) {
	t.Helper()
	cs, root := imagetest.LocalStore(t)
	b := imagetest.NewBlob(ocispec.MediaTypeImageLayerGzip, data)
	if err := ctrcontent.WriteBlob(t.Context(), cs, b.Desc.Digest.String(), bytes.NewReader(data), b.Desc); err != nil {
		t.Fatal(err)
	}
	return cs, root, b.Desc
}

func readAll(t *testing.T, p ctrcontent.Provider, desc ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := content.Open(t.Context(), p, desc)
	if err != nil {
		t.Fatalf("open %s: %v", desc.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", desc.Digest, err)
	}
	return b
}

func TestDirReadsBlobsFromTheDirectory(t *testing.T) {
	data := bytes.Repeat([]byte("layer"), 300_000) // more than one ReadSize block
	cs, root, desc := stored(t, data)
	api := imagetest.OverAPI(cs)
	d, err := content.OpenDir(api, root)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, d, desc); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the blob's %d", len(got), len(data))
	}
	if api.Opens() != 0 || d.Fallbacks() != 0 {
		t.Errorf("blob opened %d times through the API (%d fallbacks), want 0: it is in the directory", api.Opens(), d.Fallbacks())
	}
}

// TestOpenDirOfAnEmptyStore: a containerd that holds nothing yet has no
// blobs directory; the directory is used once blobs arrive.
func TestOpenDirOfAnEmptyStore(t *testing.T) {
	cs, root := imagetest.LocalStore(t)
	api := imagetest.OverAPI(cs)
	d, err := content.ReadDirectly(t.Context(), api, nil, root)
	if err != nil || d == nil {
		t.Fatalf("ReadDirectly of an empty store = %v, %v; want a Dir", d, err)
	}
	data := []byte("pulled later")
	b := imagetest.NewBlob(ocispec.MediaTypeImageLayerGzip, data)
	if err := ctrcontent.WriteBlob(t.Context(), cs, b.Desc.Digest.String(), bytes.NewReader(data), b.Desc); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, d, b.Desc); !bytes.Equal(got, data) || api.Opens() != 0 {
		t.Errorf("read %q with %d API opens; want %q from the directory", got, api.Opens(), data)
	}
}

// TestDirAsksContainerdFirst: the directory holds every namespace's blobs;
// one containerd does not list (here: the API's store lacks it) is not
// read, even though its file is there.
func TestDirAsksContainerdFirst(t *testing.T) {
	_, root, desc := stored(t, []byte("another namespace's blob"))
	other, _ := imagetest.LocalStore(t)
	d, err := content.OpenDir(imagetest.OverAPI(other), root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReaderAt(t.Context(), desc); !errdefs.IsNotFound(err) {
		t.Errorf("ReaderAt of a blob containerd does not list: err = %v, want not found", err)
	}
}

// TestDirFallsBackPerBlob: a blob the directory does not give (absent,
// not a regular file, unreadable) is read through the API, whole, and
// without error.
func TestDirFallsBackPerBlob(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"absent", func(t *testing.T, path string) {}},
		{"not a regular file", func(t *testing.T, path string) {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"unreadable", func(t *testing.T, path string) {
			if os.Geteuid() == 0 {
				// As nobody (asNobody) the API's own store would be
				// unreadable too; the directory-wide case covers root.
				t.Skip("root reads any file; see TestReadDirectlyFallsBackToAPI/unreadable")
			}
			if err := os.WriteFile(path, []byte("secret"), 0o000); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte("held by containerd, not in this directory")
			cs, _, desc := stored(t, data)
			_, root, _ := stored(t, []byte("some other blob")) // a readable directory of another store
			path := filepath.Join(root, "blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded())
			tc.damage(t, path)
			api := imagetest.OverAPI(cs)
			d, err := content.OpenDir(api, root)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, d, desc); !bytes.Equal(got, data) {
				t.Errorf("read %q, want %q", got, data)
			}
			if d.Fallbacks() != 1 || api.Opens() != 1 {
				t.Errorf("%d fallbacks, %d API opens; want 1 and 1", d.Fallbacks(), api.Opens())
			}
		})
	}
}

// TestReadDirectlyFallsBackToAPI: a content directory that is absent, not
// a directory or unreadable gives no Dir and says why, so the caller reads
// through the API; "none" turns the directory off.
func TestReadDirectlyFallsBackToAPI(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	for _, tc := range []struct {
		name    string
		setting func(t *testing.T) string
		want    func(error) bool
	}{
		{"absent", func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone") }, errdefs.IsNotFound},
		{"not a directory", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "blobs"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, errdefs.IsFailedPrecondition},
		{"unreadable", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "blobs"), 0o000); err != nil {
				t.Fatal(err)
			}
			return dir
		}, errdefs.IsPermissionDenied},
		{"turned off", func(*testing.T) string { return content.DirNone }, func(err error) bool { return err == nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setting := tc.setting(t)
			var (
				d   *content.Dir
				err error
			)
			read := func() { d, err = content.ReadDirectly(t.Context(), cs, nil, setting) }
			if tc.name == "unreadable" {
				asNobody(t, read)
			} else {
				read()
			}
			if d != nil || !tc.want(err) {
				t.Errorf("ReadDirectly(%q) = %v, %v; want no Dir and the reason", setting, d, err)
			}
		})
	}
}

// asNobody runs fn with this thread's file-system uid set to nobody's, so
// that, even when the tests run as root, file permissions apply to what fn
// opens (Linux drops CAP_DAC_OVERRIDE with a non-zero fsuid). fn must not
// start goroutines that touch files.
func asNobody(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.Setfsuid(65534)
	defer syscall.Setfsuid(0)
	fn()
}
