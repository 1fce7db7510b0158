package source_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
	"github.com/regmend/regmend/source/sourcetest"
)

// registrySource pushes f's image to "app" of a fresh registry and reads
// it from there.
func registrySource(t *testing.T, f *sourcetest.Fixture, opts ...source.RegistryOption) (*imagetest.Registry, *source.RegistrySource) {
	t.Helper()
	reg := imagetest.NewRegistry(t)
	imagetest.Push(t, reg.Base, "app", f.Name, f.Image)
	reg.Log.Reset()
	remote, err := registry.NewRemote(registry.WithHostsDir(reg.HostsDir), registry.WithRetry(4, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.NewRegistry(sourcetest.Context(t), remote, reg.Host, "app", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return reg, src
}

// gets counts the GETs of each blob and manifest in the log, by digest.
func gets(reg *imagetest.Registry) map[string]int {
	out := map[string]int{}
	for _, r := range reg.Log.All() {
		if r.Method == http.MethodGet {
			out[r.Path[strings.LastIndexByte(r.Path, '/')+1:]]++
		}
	}
	return out
}

// TestRegistrySourceReadsEachBlobOnce: a heal reads each blob of the
// closure with one GET, however many reads of 1 MiB it makes of a layer.
func TestRegistrySourceReadsEachBlobOnce(t *testing.T) {
	f := sourcetest.NewFixture(t, 3<<20+17)
	reg, src := registrySource(t, f)
	dst := sourcetest.NewDestination(t, src)
	if _, err := dst.Heal(t, "app", f); err != nil {
		t.Fatal(err)
	}
	n := gets(reg)
	for _, b := range f.Blobs() {
		if isManifest(f, b.Desc.Digest) {
			continue // read whole by each use: the walk, its PUT, a retention tag
		}
		if n[b.Desc.Digest.String()] != 1 {
			t.Errorf("%s (%d bytes) read with %d GETs, want 1", b.Desc.Digest, b.Desc.Size, n[b.Desc.Digest.String()])
		}
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("the source registry got writes: %v", w)
	}
	for _, r := range reg.Log.All() {
		if d := r.Path[strings.LastIndexByte(r.Path, '/')+1:]; strings.Contains(r.Path, "/manifests/") && !isManifest(f, digest.Digest(d)) {
			t.Errorf("asked the manifests endpoint for a blob: %s %s", r.Method, r.Path)
		}
	}
}

// TestRegistrySourceFaults: a 503 is retried, a body cut short once is
// read on from where it broke with a Range, and one cut short every time
// is data loss: reported, not retried as a dropped connection, not pushed.
func TestRegistrySourceFaults(t *testing.T) {
	for _, c := range []struct {
		name    string
		fault   func(layer imagetest.Blob, n int, w http.ResponseWriter, r *http.Request) bool
		healed  bool
		wantGET int
	}{
		{"503 then served", func(l imagetest.Blob, n int, w http.ResponseWriter, r *http.Request) bool {
			if n == 1 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}, true, 2},
		{"cut short once", func(l imagetest.Blob, n int, w http.ResponseWriter, r *http.Request) bool {
			if n == 1 {
				cut(w, l.Data)
				return true
			}
			if r.Header.Get("Range") != "bytes="+strconv.Itoa(len(l.Data)/2)+"-"+strconv.Itoa(len(l.Data)-1) {
				w.WriteHeader(http.StatusBadRequest) // not resumed where it broke
				return true
			}
			return false
		}, true, 2},
		{"cut short always", func(l imagetest.Blob, n int, w http.ResponseWriter, r *http.Request) bool {
			cut(w, l.Data)
			return true
		}, false, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := sourcetest.NewFixture(t, 256<<10)
			layer := f.Layer()
			reg, src := registrySource(t, f)
			var mu sync.Mutex
			n := 0
			reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/"+layer.Desc.Digest.String()) {
					return false
				}
				mu.Lock()
				n++
				i := n
				mu.Unlock()
				return c.fault(layer, i, w, r)
			})
			dst := sourcetest.NewDestination(t, src)
			_, err := dst.Heal(t, "app", f)
			holds := dst.Holds(t, "app", f, layer)
			if c.healed && (err != nil || !holds) {
				t.Fatalf("heal: %v, destination holds the layer: %v", err, holds)
			}
			if !c.healed && (!errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), layer.Desc.Digest.String()) || holds) {
				t.Fatalf("heal: %v, destination holds the layer: %v; want data loss naming %s, not pushed", err, holds, layer.Desc.Digest)
			}
			if got := gets(reg)[layer.Desc.Digest.String()]; got != c.wantGET {
				t.Errorf("layer read with %d GETs, want %d", got, c.wantGET)
			}
		})
	}
}

// cut announces all of data and sends half.
func cut(w http.ResponseWriter, data []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:len(data)/2])
}

// TestRegistrySourceAbsent: content the registry lost is NotFound to the
// source, and a heal needing it reports it unhealable.
func TestRegistrySourceAbsent(t *testing.T) {
	f := sourcetest.NewFixture(t, 1024)
	reg, src := registrySource(t, f)
	layer := f.Layer()
	imagetest.Delete(t, reg.Base, "app", "blobs", layer.Desc.Digest)
	if _, err := src.Info(sourcetest.Context(t), layer.Desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("Info(deleted) = %v, want not found", err)
	}
	if _, err := src.ReaderAt(sourcetest.Context(t), layer.Desc); !errdefs.IsNotFound(err) {
		t.Errorf("ReaderAt(deleted) = %v, want not found", err)
	}
	dst := sourcetest.NewDestination(t, src)
	res, err := dst.Heal(t, "app", f)
	if !errdefs.IsNotFound(err) || res == nil || res.Unhealable == 0 || dst.Holds(t, "app", f, layer) {
		t.Errorf("heal without a layer: %v (%+v)", err, res)
	}
}

// TestRegistrySourceMounts: healing a repository of the source's own
// registry mounts every blob from the source repository (no bytes sent);
// named for another registry, WithMountInto changes nothing.
func TestRegistrySourceMounts(t *testing.T) {
	f := sourcetest.NewFixture(t, 4096)
	_, src := registrySource(t, f, source.WithMountInto("other.test:5000"))
	info, err := src.Info(sourcetest.Context(t), f.Layer().Desc.Digest)
	if err != nil || len(info.Labels) != 0 {
		t.Errorf("Info for another registry: labels %v, %v; want none", info.Labels, err)
	}

	reg, _ := registrySource(t, f)
	remote, err := registry.NewRemote(registry.WithHostsDir(reg.HostsDir), registry.WithRetry(4, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	src, err = source.NewRegistry(sourcetest.Context(t), remote, reg.Host, "app", source.WithMountInto(reg.Host))
	if err != nil {
		t.Fatal(err)
	}
	info, err = src.Info(sourcetest.Context(t), f.Layer().Desc.Digest)
	host := reg.Host[:strings.LastIndexByte(reg.Host, ':')]
	if err != nil || info.Labels["containerd.io/distribution.source."+host] != "app" {
		t.Fatalf("Info within the registry: labels %v, %v; want the source label", info.Labels, err)
	}
	h, err := heal.NewHealer(src, remote)
	if err != nil {
		t.Fatal(err)
	}
	// go-containerregistry's registry keeps blobs for all repositories and
	// does not mount: this fault hides them from "copy", answers a mount
	// from "app" as distribution does (201), then serves the mounted blob
	// in "copy" (the heal reads a mount back).
	var mu sync.Mutex
	mounted := map[string]string{}
	data := map[string][]byte{}
	for _, b := range f.Blobs() {
		data[b.Desc.Digest.String()] = b.Data
	}
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if d, ok := strings.CutPrefix(r.URL.Path, "/v2/copy/blobs/"); ok && d != "uploads/" {
			if mounted[d] == "" {
				w.WriteHeader(http.StatusNotFound)
			} else {
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data[d]))
			}
			return true
		}
		if q := r.URL.Query(); r.Method == http.MethodPost && q.Get("mount") != "" {
			mounted[q.Get("mount")] = q.Get("from")
			w.WriteHeader(http.StatusCreated)
			return true
		}
		return false
	})
	reg.Log.Reset()
	res, err := h.Heal(sourcetest.Context(t), heal.Target{Registry: reg.Host, Repository: "copy", Root: f.Image.Root()})
	if err != nil {
		t.Fatal(err)
	}
	blobs := 0
	for _, b := range f.Blobs() {
		if !isManifest(f, b.Desc.Digest) {
			blobs++
		}
		if !imagetest.Has(t, reg.Base, "copy", kindOf(f, b.Desc.Digest), b.Desc.Digest.String()) {
			t.Errorf("copy lacks %s", b.Desc.Digest)
		}
	}
	if res.Mounted != blobs || len(mounted) != blobs {
		t.Errorf("mounted %d blobs (%d asked), want all %d", res.Mounted, len(mounted), blobs)
	}
	for d, from := range mounted {
		if from != "app" {
			t.Errorf("%s mounted from %q, want app", d, from)
		}
	}
	for _, r := range reg.Log.All() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") || r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/v2/app/blobs/") {
			t.Errorf("blob bytes moved: %s %s", r.Method, r.Path)
		}
	}
}

func isManifest(f *sourcetest.Fixture, d digest.Digest) bool {
	if d == f.Image.Desc.Digest {
		return true
	}
	for _, c := range f.Image.Children {
		if c.Desc.Digest == d {
			return true
		}
	}
	return false
}

func kindOf(f *sourcetest.Fixture, d digest.Digest) string {
	if isManifest(f, d) {
		return "manifests"
	}
	return "blobs"
}

// TestRegistrySourceSniffsMediaType: a registry that sends no Content-Type
// with a manifest still resolves it as the index it is, by tag and by
// digest; a digest of a layer does not resolve as a root.
func TestRegistrySourceSniffsMediaType(t *testing.T) {
	f := sourcetest.NewFixture(t, 1024)
	reg, src := registrySource(t, f)
	reg.SetFault(noContentType(reg))
	ctx := sourcetest.Context(t)
	for _, ref := range []string{f.Name, f.Image.Desc.Digest.String()} {
		if d, err := src.Resolve(ctx, ref); err != nil || d.MediaType != ocispec.MediaTypeImageIndex || d.Size != f.Image.Desc.Size {
			t.Errorf("Resolve(%q) = %q %d, %v; want the index", ref, d.MediaType, d.Size, err)
		}
	}
	if _, err := src.Resolve(ctx, f.Layer().Desc.Digest.String()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Resolve(layer) = %v, want invalid argument", err)
	}
}

// noContentType answers HEADs from the registry's own GET, without its
// Content-Type, so Resolve must read the document to learn its type.
func noContentType(reg *imagetest.Registry) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodHead || r.Header.Get("X-Inner") != "" {
			return false
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, reg.Base+r.URL.Path, nil)
		req.Header.Set("Accept", r.Header.Get("Accept"))
		req.Header.Set("X-Inner", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for k, v := range resp.Header {
			if k != "Content-Type" {
				w.Header()[k] = v
			}
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.WriteHeader(resp.StatusCode)
		return true
	}
}

// TestRegistrySourceResolveReadFails: a registry whose HEAD names no type
// and whose GET of the document then answers 503 fails Resolve as the
// registry's failure, not as the caller's bad argument (exit 2, "usage").
func TestRegistrySourceResolveReadFails(t *testing.T) {
	f := sourcetest.NewFixture(t, 1024)
	reg, src := registrySource(t, f)
	sniff := noContentType(reg)
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && r.Header.Get("X-Inner") == "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return sniff(w, r)
	})
	_, err := src.Resolve(sourcetest.Context(t), f.Name)
	if errdefs.IsInvalidArgument(err) || !errdefs.IsUnavailable(err) {
		t.Fatalf("Resolve with the GET answering 503 = %v, want the registry's 503, not invalid argument", err)
	}
	if !strings.Contains(err.Error(), f.Name) {
		t.Errorf("error %q does not name %s", err, f.Name)
	}
}
