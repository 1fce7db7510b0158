package registry_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
)

// readFixture pushes a one-platform image to repository "app" of an
// in-memory registry tagged v1 and opens a read session on it, from a
// Remote that may heal only another registry.
func readFixture(t *testing.T) (*imagetest.Registry, *registry.Session, *imagetest.Object) {
	t.Helper()
	reg := imagetest.NewRegistry(t)
	m := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 4096)
	imagetest.Push(t, reg.Base, "app", "v1", m)
	reg.Log.Reset()
	r, err := registry.NewRemote(registry.WithHostsDir(reg.HostsDir), registry.WithRetry(3, time.Millisecond), registry.WithRegistries("edge:5000"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.ReadSession(t.Context(), reg.Host, "app")
	if err != nil {
		t.Fatalf("read session on a registry regmend does not heal: %v", err)
	}
	return reg, s, m
}

// TestStatAndResolve: Stat finds a manifest with its media type and a
// blob with its size, Resolve a tag; absence is NotFound; only HEADs are
// sent.
func TestStatAndResolve(t *testing.T) {
	reg, s, m := readFixture(t)
	ctx := t.Context()
	if d, err := s.Stat(ctx, m.Desc.Digest); err != nil || d.MediaType != ocispec.MediaTypeImageManifest || d.Size != m.Desc.Size {
		t.Errorf("Stat(manifest) = %+v, %v", d, err)
	}
	layer := m.Layers[0].Desc
	if d, err := s.Stat(ctx, layer.Digest); err != nil || d.MediaType != "" || d.Size != layer.Size || d.Digest != layer.Digest {
		t.Errorf("Stat(layer) = %+v, %v; want %d bytes, no media type", d, err, layer.Size)
	}
	if d, err := s.StatBlob(ctx, layer.Digest); err != nil || d.MediaType != "" || d.Size != layer.Size {
		t.Errorf("StatBlob(layer) = %+v, %v", d, err)
	}
	if d, err := s.StatBlob(ctx, m.Desc.Digest); err != nil || d.MediaType != ocispec.MediaTypeImageManifest || d.Size != m.Desc.Size {
		t.Errorf("StatBlob(manifest) = %+v, %v; want it found as the manifest it is", d, err)
	}
	for _, stat := range []func(context.Context, digest.Digest) (ocispec.Descriptor, error){s.Stat, s.StatBlob} {
		if _, err := stat(ctx, digest.FromString("absent")); !errdefs.IsNotFound(err) {
			t.Errorf("Stat(absent) = %v, want not found", err)
		}
	}
	if _, err := s.Stat(ctx, "sha256:../x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Stat(bad digest) = %v, want invalid argument", err)
	}
	if d, err := s.Resolve(ctx, "v1"); err != nil || d.Digest != m.Desc.Digest || d.Size != m.Desc.Size || d.MediaType != m.Desc.MediaType {
		t.Errorf("Resolve(v1) = %+v, %v", d, err)
	}
	if _, err := s.Resolve(ctx, "v2"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), reg.Host+"/app:v2") {
		t.Errorf("Resolve(v2) = %v, want not found naming it", err)
	}
	if _, err := s.Resolve(ctx, "a/b"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Resolve(a/b) = %v, want invalid argument", err)
	}
	for _, r := range reg.Log.All() {
		if r.Method != http.MethodHead {
			t.Errorf("a Stat or Resolve sent %s %s", r.Method, r.Path)
		}
	}
}

// TestOpenBlob: a blob reads whole, or from an offset with a Range, also
// from a registry that ignores Range; a manifest reads by digest; a 503 is
// retried; absence is NotFound.
func TestOpenBlob(t *testing.T) {
	reg, s, m := readFixture(t)
	ctx := t.Context()
	layer := m.Layers[0]
	read := func(off int64) []byte {
		t.Helper()
		rc, err := s.OpenBlob(ctx, layer.Desc, off)
		if err != nil {
			t.Fatalf("OpenBlob(%d): %v", off, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("OpenBlob(%d): read: %v", off, err)
		}
		return b
	}
	if got := read(0); string(got) != string(layer.Data) {
		t.Errorf("OpenBlob(0): %d bytes, not the blob's", len(got))
	}
	if got := read(1000); string(got) != string(layer.Data[1000:]) {
		t.Errorf("OpenBlob(1000): %d bytes, not the blob's from 1000", len(got))
	}
	var ranges []string
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		ranges = append(ranges, r.Header.Get("Range"))
		r.Header.Del("Range") // a registry that ignores Range
		return false
	})
	if got := read(1000); string(got) != string(layer.Data[1000:]) {
		t.Errorf("OpenBlob(1000) from a registry ignoring Range: %d bytes, not the blob's from 1000", len(got))
	}
	if len(ranges) != 1 || ranges[0] != "bytes=1000-4095" {
		t.Errorf("ranges asked: %q, want [bytes=1000-4095]", ranges)
	}
	var failed atomic.Int32
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && failed.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	rc, err := s.OpenManifest(ctx, m.Desc)
	if err != nil {
		t.Fatalf("OpenManifest after a 503: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != string(m.Data) || failed.Load() != 2 {
		t.Errorf("OpenManifest: %d bytes after %d GETs, want its %d after 2", len(b), failed.Load(), m.Desc.Size)
	}
	reg.SetFault(nil)
	absent := ocispec.Descriptor{Digest: digest.FromString("absent"), Size: 6}
	if _, err := s.OpenBlob(ctx, absent, 0); !errdefs.IsNotFound(err) {
		t.Errorf("OpenBlob(absent) = %v, want not found", err)
	}
	if _, err := s.OpenManifest(ctx, absent); !errdefs.IsNotFound(err) {
		t.Errorf("OpenManifest(absent) = %v, want not found", err)
	}
	if _, err := s.OpenBlob(ctx, layer.Desc, layer.Desc.Size); !errdefs.IsInvalidArgument(err) {
		t.Errorf("OpenBlob(at its end) = %v, want invalid argument", err)
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("reads sent writes: %v", w)
	}
}

// TestReadSessionNeedsAReadableHost: a registry whose only host is
// regmend's own mirror has nothing to read from.
func TestReadSessionNeedsAReadableHost(t *testing.T) {
	r := newRemote(t, oneHost(hostOf("127.0.0.1:5050", "http")), 1, registry.WithExcludedHost("127.0.0.1:5050"))
	if _, err := r.ReadSession(t.Context(), "edge:5000", "app"); !errdefs.IsNotFound(err) {
		t.Errorf("ReadSession = %v, want not found", err)
	}
	if _, err := r.ReadSession(t.Context(), "edge:5000", "App"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ReadSession(bad repo) = %v, want invalid argument", err)
	}
}
