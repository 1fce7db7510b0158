package heal_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// TestHealAsksOncePerNode: the plan is the only presence check. An orphan
// heal asks once about each node it plans before it writes (the manifest
// by HEAD; its config and layers by a ranged GET, since the manifest
// missing is evidence of loss), then writes: each blob one POST and one
// PUT, the manifest and the tag one PUT each, the tag after one HEAD; and
// reads back each node it wrote once.
func TestHealAsksOncePerNode(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	if _, err := f.Heal(t, "app", m1); err != nil {
		t.Fatal(err)
	}
	asks, after := asksAroundWrites(f.Log.All())
	var posts, puts int
	for _, r := range f.Log.Writes() {
		switch r.Method {
		case http.MethodPost:
			posts++
		case http.MethodPut:
			puts++
		}
	}
	for path, n := range asks {
		if n != 1 {
			t.Errorf("%s asked %d times before the writes, want once", path, n)
		}
	}
	blobs := len(m1.Layers) + 1
	if len(asks) != blobs+1 || posts != blobs || puts != blobs+2 {
		t.Errorf("%d nodes asked, %d POSTs, %d PUTs; want %d, %d and %d (each node asked once, then written)",
			len(asks), posts, puts, blobs+1, blobs, blobs+2)
	}
	tag := "HEAD /v2/app/manifests/" + heal.RetentionTag(m1.Desc.Digest)
	if after[tag] != 1 || len(after) != blobs+2 {
		t.Errorf("after the first write: %v; want the retention tag's HEAD and one read-back GET of each of the %d nodes written", after, blobs+1)
	}
	for path, n := range after {
		if n != 1 {
			t.Errorf("%s sent %d times after the first write, want once", path, n)
		}
	}
}

// asksAroundWrites counts the reads (HEAD, GET) of each path before the
// first write, and after it.
func asksAroundWrites(log []imagetest.Request) (before, after map[string]int) {
	before, after = map[string]int{}, map[string]int{}
	cur := before
	for _, r := range log {
		switch r.Method {
		case http.MethodHead, http.MethodGet:
			cur[r.Method+" "+r.Path]++
		default:
			cur = after
		}
	}
	return before, after
}

// TestHealMountsFromSourceRepository: the node pulled the image from
// repository "base" of the same registry (its source labels say so) and
// heals it into "app": each blob is asked to be mounted from "base", and
// the registry mounting it (201) means no byte of it is sent.
func TestHealMountsFromSourceRepository(t *testing.T) {
	f := healtest.New(t)
	m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 1024)
	imagetest.WriteLocal(t, f.CS, f.Host, "base", m)
	// go-containerregistry's registry does not mount; this fault answers
	// as distribution does when the source repository holds the blob, and
	// then serves the mounted blob in "app" (the heal reads a mount back,
	// since the registry lacked the manifest).
	var mu sync.Mutex
	mounts := map[string]string{}
	blobs := map[string]imagetest.Blob{}
	for _, b := range append(m.Layers, *m.Config) {
		blobs[b.Desc.Digest.String()] = b
	}
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		q := r.URL.Query()
		if d, ok := strings.CutPrefix(r.URL.Path, "/v2/app/blobs/"); ok && mounts[d] != "" {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blobs[d].Data))
			return true
		}
		if r.Method != http.MethodPost || q.Get("mount") == "" {
			return false
		}
		mounts[q.Get("mount")] = q.Get("from")
		w.WriteHeader(http.StatusCreated)
		return true
	})
	res, err := f.Healer.Heal(t.Context(), heal.Target{Registry: f.Host, Repository: "app", Root: m.Root()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mounted != 3 || res.Pushed != 1 {
		t.Errorf("mounted %d, pushed %d; want the 3 blobs mounted and the manifest pushed", res.Mounted, res.Pushed)
	}
	for _, b := range append(m.Layers, *m.Config) {
		if from := mounts[b.Desc.Digest.String()]; from != "base" {
			t.Errorf("blob %s: mount from %q, want base", b.Desc.Digest, from)
		}
	}
	for _, r := range f.Log.Writes() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/") {
			t.Errorf("uploaded a blob the registry mounted: %s %s", r.Method, r.Path)
		}
	}
}

// TestHealUploadsWhenMountRefused: a registry that starts an upload in
// answer to a mount request (go-containerregistry's, or distribution's
// when the source lacks the blob) gets the bytes in that upload.
func TestHealUploadsWhenMountRefused(t *testing.T) {
	f := healtest.New(t)
	m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 1024)
	imagetest.WriteLocal(t, f.CS, f.Host, "base", m)
	res, err := f.Healer.Heal(t.Context(), heal.Target{Registry: f.Host, Repository: "app", Root: m.Root()})
	if err != nil {
		t.Fatal(err)
	}
	f.AssertWhole(t, "app", m)
	if res.Pushed != 4 || res.Mounted != 0 {
		t.Errorf("pushed %d, mounted %d; want all 4 pushed", res.Pushed, res.Mounted)
	}
	posts := 0
	for _, r := range f.Log.All() {
		if r.Method == http.MethodPost {
			posts++
		}
	}
	if posts != 3 {
		t.Errorf("%d POSTs, want 3: one per blob, the mount request starting the upload", posts)
	}
}

// TestHealBoundsUploadsInFlight: WithUploads(2) never has more than two
// blobs over 1 MiB open for upload at once, whatever WithConcurrency
// allows the small ones; WithUploads(0) is refused.
func TestHealBoundsUploadsInFlight(t *testing.T) {
	f := healtest.New(t)
	m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 5, 2<<20)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", m)
	store := &openCounter{Store: f.CS, over: 1 << 20}
	h, err := heal.NewHealer(store, f.Remote(t), heal.WithUploads(2), heal.WithConcurrency(8))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Heal(t.Context(), f.Target("app", m)); err != nil {
		t.Fatal(err)
	}
	f.AssertWhole(t, "app", m)
	if store.most > 2 || store.most == 0 {
		t.Errorf("%d large blobs open at once, want 1 or 2", store.most)
	}
	if _, err := heal.NewHealer(f.CS, f.Remote(t), heal.WithUploads(0)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("WithUploads(0): err = %v, want invalid argument", err)
	}
}

// openCounter is a store that tracks the most blobs over a size open at
// once.
type openCounter struct {
	ctrcontent.Store
	over       int64
	mu         sync.Mutex
	open, most int
}

func (s *openCounter) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	ra, err := s.Store.ReaderAt(ctx, desc)
	if err != nil || desc.Size <= s.over {
		return ra, err
	}
	s.mu.Lock()
	s.open++
	s.most = max(s.most, s.open)
	s.mu.Unlock()
	return &countedClose{ReaderAt: ra, s: s}, nil
}

type countedClose struct {
	ctrcontent.ReaderAt
	s    *openCounter
	once sync.Once
}

func (c *countedClose) Close() error {
	c.once.Do(func() { c.s.mu.Lock(); c.s.open--; c.s.mu.Unlock() })
	return c.ReaderAt.Close()
}

// TestHealTellsAPushHostTheRegistry: when hosts.toml sends the registry's
// requests to another host, each request, presence HEADs as writes, names
// the registry in ?ns=, as containerd does.
func TestHealTellsAPushHostTheRegistry(t *testing.T) {
	f := healtest.New(t)
	const name = "edge.test:5000"
	imagetest.WriteHostsTOML(t, f.HostsDir, name, fmt.Sprintf("server = %q\n", f.Base))
	m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 1024)
	imagetest.WriteLocal(t, f.CS, name, "app", m)
	var mu sync.Mutex
	var missing []string
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("ns") != name {
			mu.Lock()
			missing = append(missing, r.Method+" "+r.URL.String())
			mu.Unlock()
		}
		return false
	})
	h, err := heal.NewHealer(f.CS, f.Remote(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Heal(t.Context(), heal.Target{Registry: name, Repository: "app", Root: m.Root()}); err != nil {
		t.Fatal(err)
	}
	f.SetFault(nil) // the test's own HEADs below are not the heal's
	f.AssertWhole(t, "app", m)
	for _, r := range missing {
		t.Errorf("request without ns=%s: %s", name, r)
	}
}

// TestHealUploadsLargestFirst: blobs go largest first, so no large upload
// starts last and runs alone at the end (here, one at a time: the layers,
// then the small config).
func TestHealUploadsLargestFirst(t *testing.T) {
	f := healtest.New(t, heal.WithUploads(1), heal.WithConcurrency(1))
	m1, _ := f.Orphan(t, imagetest.OCI)
	size := map[string]int64{}
	for _, b := range append(m1.Layers, *m1.Config) {
		size[b.Desc.Digest.String()] = b.Desc.Size
	}
	var mu sync.Mutex
	var order []int64
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if d := imagetest.UploadDigest(r); d != "" {
			mu.Lock()
			order = append(order, size[d])
			mu.Unlock()
		}
		return false
	})
	if _, err := f.Heal(t, "app", m1); err != nil {
		t.Fatal(err)
	}
	if len(order) != len(size) || !slices.IsSortedFunc(order, func(a, b int64) int { return cmp.Compare(b, a) }) {
		t.Errorf("uploads by size %v, want all %d, largest first", order, len(size))
	}
}

// TestHealSmallBlobsGoBesideUploads: with one upload slot taken by a large
// layer, the small config is uploaded meanwhile rather than after it (the
// registry holds the layer's upload until the config's arrives).
func TestHealSmallBlobsGoBesideUploads(t *testing.T) {
	f := healtest.New(t, heal.WithUploads(1))
	m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 2<<20)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", m)
	configSeen := make(chan struct{})
	var once sync.Once
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		switch imagetest.UploadDigest(r) {
		case m.Config.Desc.Digest.String():
			once.Do(func() { close(configSeen) })
		case m.Layers[0].Desc.Digest.String():
			select {
			case <-configSeen:
			case <-time.After(10 * time.Second):
				t.Error("the config's upload waited for the layer's")
			}
		}
		return false
	})
	if _, err := f.Healer.Heal(t.Context(), f.Target("app", m)); err != nil {
		t.Fatal(err)
	}
	f.AssertWhole(t, "app", m)
}
