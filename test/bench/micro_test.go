package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
	"github.com/regmend/regmend/resolver/registry"
)

// Go benchmarks of regmend's hot paths, on real local content stores and
// go-containerregistry's in-memory registry. They run with
// `go test -bench . ./test/bench`; TestBenchTable includes them.

const (
	microRegistry = "edge:5000"
	microRepo     = "app"
)

// twoPlatform is a 2-platform index of 4-layer images, layers of size bytes.
func twoPlatform(tb testing.TB, size int) *imagetest.Object {
	tb.Helper()
	return imagetest.Index(tb, imagetest.OCI,
		imagetest.Manifest(tb, imagetest.OCI, imagetest.Platform("linux", "amd64"), healLayers, size),
		imagetest.Manifest(tb, imagetest.OCI, imagetest.Platform("linux", "arm64"), healLayers, size))
}

// BenchmarkClosureWalk walks a 2-platform image (13 nodes) in a local store.
func BenchmarkClosureWalk(b *testing.B) {
	cs, _ := imagetest.LocalStore(b)
	idx := twoPlatform(b, 1024)
	imagetest.WriteLocal(b, cs, microRegistry, microRepo, idx)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := content.Walk(ctx, cs, idx.Root()); err != nil {
			b.Fatal(err)
		}
	}
}

// memRegistry serves go-containerregistry's in-memory registry; it returns
// its base URL and a hosts directory that reaches it.
func memRegistry(tb testing.TB) (base, host, hostsDir string) {
	tb.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	tb.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	hostsDir = tb.TempDir()
	if err := os.MkdirAll(filepath.Join(hostsDir, host), 0o755); err != nil {
		tb.Fatal(err)
	}
	toml := fmt.Sprintf("server = %q\n", srv.URL)
	if err := os.WriteFile(filepath.Join(hostsDir, host, "hosts.toml"), []byte(toml), 0o644); err != nil {
		tb.Fatal(err)
	}
	return srv.URL, host, hostsDir
}

func benchPlan(b *testing.B, present bool) {
	base, host, hostsDir := memRegistry(b)
	cs, _ := imagetest.LocalStore(b)
	idx := twoPlatform(b, 1024)
	imagetest.WriteLocal(b, cs, host, microRepo, idx)
	if present {
		imagetest.Push(b, base, microRepo, "v1", idx)
	}
	remote, err := registry.NewRemote(registry.WithHostsDir(hostsDir))
	if err != nil {
		b.Fatal(err)
	}
	h, err := heal.NewHealer(cs, remote)
	if err != nil {
		b.Fatal(err)
	}
	target := heal.Target{Registry: host, Repository: microRepo, Root: idx.Root()}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Plan(ctx, target); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlanPresent plans a 2-platform image the registry holds: it asks
// for the 3 manifests.
func BenchmarkPlanPresent(b *testing.B) { benchPlan(b, true) }

// BenchmarkPlanEmpty plans a 2-platform image the registry lacks: it asks
// for the 3 manifests and the 10 blobs.
func BenchmarkPlanEmpty(b *testing.B) { benchPlan(b, false) }

// mirrorServer serves a one-layer image (an 8 MiB layer) from a local store
// through regmend's mirror.
func mirrorServer(b *testing.B) (*httptest.Server, *imagetest.Object) {
	cs, _ := imagetest.LocalStore(b)
	img := imagetest.Manifest(b, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, healLayerSize)
	imagetest.WriteLocal(b, cs, microRegistry, microRepo, img)
	remote, err := registry.NewRemote(registry.WithRegistries(microRegistry), registry.WithHostsDir(""))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(mirror.New(cs, remote))
	b.Cleanup(srv.Close)
	return srv, img
}

// get fetches url and discards the body, failing on anything but 200.
func get(b *testing.B, c *http.Client, url string, accept string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
}

// BenchmarkMirrorBlob GETs an 8 MiB layer from the mirror, as containerd
// does after the registry answered 404.
func BenchmarkMirrorBlob(b *testing.B) {
	srv, img := mirrorServer(b)
	url := fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", srv.URL, microRepo, img.Layers[0].Desc.Digest, microRegistry)
	b.SetBytes(img.Layers[0].Desc.Size)
	b.ReportAllocs()
	for b.Loop() {
		get(b, srv.Client(), url, "*/*")
	}
}

// BenchmarkMirrorManifest GETs the manifest from the mirror.
func BenchmarkMirrorManifest(b *testing.B) {
	srv, img := mirrorServer(b)
	url := fmt.Sprintf("%s/v2/%s/manifests/%s?ns=%s", srv.URL, microRepo, img.Desc.Digest, microRegistry)
	b.SetBytes(img.Desc.Size)
	b.ReportAllocs()
	for b.Loop() {
		get(b, srv.Client(), url, img.Desc.MediaType)
	}
}

// BenchmarkRegistryBlob GETs the same 8 MiB layer from go-containerregistry's
// in-memory registry: a reference for BenchmarkMirrorBlob.
func BenchmarkRegistryBlob(b *testing.B) {
	base, _, _ := memRegistry(b)
	img := imagetest.Manifest(b, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, healLayerSize)
	imagetest.Push(b, base, microRepo, "v1", img)
	url := fmt.Sprintf("%s/v2/%s/blobs/%s", base, microRepo, img.Layers[0].Desc.Digest)
	b.SetBytes(img.Layers[0].Desc.Size)
	b.ReportAllocs()
	for b.Loop() {
		get(b, http.DefaultClient, url, "*/*")
	}
}

// benchMicro runs the Go benchmarks above and adds them to the table.
func benchMicro(t *testing.T, rep *report) {
	benches := []struct {
		name, what string
		fn         func(*testing.B)
	}{
		{"ClosureWalk", "content.Walk of a 2-platform image (13 nodes) in a local store", BenchmarkClosureWalk},
		{"PlanPresent", "Healer.Plan, registry holds the image: 3 HEADs", BenchmarkPlanPresent},
		{"PlanEmpty", "Healer.Plan, registry lacks the image: 13 HEADs", BenchmarkPlanEmpty},
		{"MirrorManifest", "mirror GET of a manifest from a local store", BenchmarkMirrorManifest},
		{"MirrorBlob", "mirror GET of an 8 MiB layer from a local store", BenchmarkMirrorBlob},
		{"RegistryBlob", "reference: the same GET from go-containerregistry's in-memory registry", BenchmarkRegistryBlob},
		{"UploadFile", "Session.Upload of a 32 MiB blob file to a server that discards it, read as the HTTP client asks (32 KiB)", BenchmarkUploadFile},
		{"UploadFile1MiB", "the same, read through a 1 MiB buffer", BenchmarkUploadFile1MiB},
	}
	var rows [][]string
	for _, bm := range benches {
		r := testing.Benchmark(bm.fn)
		if r.N == 0 {
			t.Fatalf("Benchmark%s did not run", bm.name)
		}
		mbs := ""
		if r.Bytes > 0 {
			mbs = fmt.Sprintf("%.0f", float64(r.Bytes)*float64(r.N)/1e6/r.T.Seconds())
		}
		rows = append(rows, []string{"Benchmark" + bm.name, bm.what, perOp(r.NsPerOp()), mbs,
			fmt.Sprintf("%d", r.AllocsPerOp()), size(r.AllocedBytesPerOp())})
	}
	rep.add(section{
		title:  "Go benchmarks of the hot paths",
		intro:  "`go test -bench . ./test/bench`, run in-process by the table (`testing.Benchmark`); local stores are containerd's `local` store on disk, registries go-containerregistry's in-memory one over loopback HTTP.",
		header: []string{"benchmark", "what", "time/op", "MB/s", "allocs/op", "bytes/op"},
		rows:   rows,
	})
}

func perOp(ns int64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", float64(ns)/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", float64(ns)/1e3)
	}
	return fmt.Sprintf("%d ns", ns)
}
