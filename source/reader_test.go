package source_test

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
	"github.com/regmend/regmend/source/sourcetest"
)

// The registry source's reader: bodies that break off, end early or
// answer nothing.

// TestRegistrySourceBoundsReopens: a registry that breaks off every answer
// after 1 KiB makes progress each time, but a blob is opened again at most
// 16 times per read of it: the heal fails, having sent a bounded number of
// GETs, and the destination lacks the blob.
func TestRegistrySourceBoundsReopens(t *testing.T) {
	f := sourcetest.NewFixture(t, 256<<10)
	layer := f.Layer()
	reg, src := registrySource(t, f)
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/"+layer.Desc.Digest.String()) {
			return false
		}
		start := 0
		if rg, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
			a, _, _ := strings.Cut(rg, "-")
			start, _ = strconv.Atoi(a)
			w.Header().Set("Content-Range", "bytes "+a+"-"+strconv.Itoa(len(layer.Data)-1)+"/"+strconv.Itoa(len(layer.Data)))
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(layer.Data)-start))
		if start > 0 {
			w.WriteHeader(http.StatusPartialContent)
		}
		w.Write(layer.Data[start:min(start+1024, len(layer.Data))])
		return true
	})
	dst := sourcetest.NewDestination(t, src)
	if _, err := dst.Heal(t, "app", f); err == nil || !strings.Contains(err.Error(), layer.Desc.Digest.String()) {
		t.Fatalf("heal: %v, want a failure naming %s", err, layer.Desc.Digest)
	}
	if dst.Holds(t, "app", f, layer) {
		t.Error("the destination holds a blob read in pieces that never came whole")
	}
	// 4 tries of the upload, each reading at most 1+16 answers.
	n := gets(reg)[layer.Desc.Digest.String()]
	t.Logf("%d GETs of the layer", n)
	if n > 4*17 {
		t.Errorf("%d GETs of the layer, want at most %d", n, 4*17)
	}
}

// TestRegistrySourceCleanEndsAreDataLoss: answers that each end cleanly
// (io.EOF, Content-Length honoured) short of the blob are opened again at
// most 16 times; the error then is data loss and an unexpected EOF, never
// io.EOF, which a caller would read as the blob's clean end.
func TestRegistrySourceCleanEndsAreDataLoss(t *testing.T) {
	f := sourcetest.NewFixture(t, 256<<10)
	layer := f.Layer()
	reg, src := registrySource(t, f)
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/"+layer.Desc.Digest.String()) {
			return false
		}
		start := 0
		if rg, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
			a, _, _ := strings.Cut(rg, "-")
			start, _ = strconv.Atoi(a)
		}
		end := min(start+1024, len(layer.Data))
		w.Header().Set("Content-Length", strconv.Itoa(end-start))
		if start > 0 {
			w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(end-1)+"/"+strconv.Itoa(len(layer.Data)))
			w.WriteHeader(http.StatusPartialContent)
		}
		w.Write(layer.Data[start:end])
		return true
	})
	ra, err := src.ReaderAt(sourcetest.Context(t), layer.Desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	n, err := ra.ReadAt(make([]byte, layer.Desc.Size), 0)
	if errors.Is(err, io.EOF) || !errors.Is(err, io.ErrUnexpectedEOF) || !errdefs.IsDataLoss(err) {
		t.Errorf("ReadAt = %d, %v; want data loss, an unexpected EOF, not io.EOF", n, err)
	}
	if got := gets(reg)[layer.Desc.Digest.String()]; got != 1+16 {
		t.Errorf("%d GETs, want 1+16", got)
	}
}

// emptyBody answers every Read with nothing and no error.
type emptyBody struct{ io.Closer }

func (emptyBody) Read([]byte) (int, error) { return 0, nil }

// TestRegistrySourceEmptyReadsAreStuck: a body whose reads return nothing
// and no error (a broken proxy or transport) counts as stuck: ReadAt
// opens it again a bounded number of times and fails as data loss rather
// than spinning.
func TestRegistrySourceEmptyReadsAreStuck(t *testing.T) {
	f := sourcetest.NewFixture(t, 64<<10)
	layer := f.Layer()
	reg := imagetest.NewRegistry(t)
	imagetest.Push(t, reg.Base, "app", f.Name, f.Image)
	reg.Log.Reset()
	stuck := roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err == nil && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+layer.Desc.Digest.String()) {
			resp.Body = emptyBody{resp.Body}
		}
		return resp, err
	})
	hosts := docker.ConfigureDefaultRegistries(docker.WithClient(&http.Client{Transport: stuck}), docker.WithPlainHTTP(docker.MatchAllHosts))
	remote, err := registry.NewRemote(registry.WithRegistryHosts(hosts), registry.WithRetry(1, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := sourcetest.Context(t)
	src, err := source.NewRegistry(ctx, remote, reg.Host, "app")
	if err != nil {
		t.Fatal(err)
	}
	ra, err := src.ReaderAt(ctx, layer.Desc)
	if err != nil {
		t.Fatal(err)
	}
	// Not closed on a timeout: a ReadAt spinning holds its lock.
	done := make(chan error, 1)
	go func() {
		_, err := ra.ReadAt(make([]byte, layer.Desc.Size), 0)
		done <- err
	}()
	select {
	case err := <-done:
		ra.Close()
		if !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), layer.Desc.Digest.String()) {
			t.Errorf("ReadAt = %v, want data loss naming %s", err, layer.Desc.Digest)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ReadAt of a body that answers nothing did not return in 30s")
	}
	// The registry logs a GET once its handler returns, which for the last
	// body regmend closed unread can be after ReadAt did.
	want := 1 + 3 // the first, then maxResumes
	gotWant := func() bool { return gets(reg)[layer.Desc.Digest.String()] >= want }
	imagetest.WaitUntil(t, 5*time.Second, "the last GET logged", gotWant)
	if got := gets(reg)[layer.Desc.Digest.String()]; got != want {
		t.Errorf("%d GETs, want 1+3 (the first, then maxResumes)", got)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
