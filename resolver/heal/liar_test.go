package heal_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

// staleCache answers for the blobs it was given as distribution with
// storage.cache.blobdescriptor: inmemory does once its garbage collector
// deleted them while it kept running: HEAD 200 with the blob's length, GET
// 200 announcing the length and sending no byte, a ranged GET 206 with no
// byte. An upload of a blob writes it again and ends the lie for it, unless
// stubborn (a registry that accepts the bytes and still serves none).
type staleCache struct {
	mu       sync.Mutex
	lying    map[string]int64 // digest → size
	stubborn bool
	gets     int
}

func newStaleCache(stubborn bool, blobs ...imagetest.Blob) *staleCache {
	c := &staleCache{lying: map[string]int64{}, stubborn: stubborn}
	for _, b := range blobs {
		c.lying[b.Desc.Digest.String()] = b.Desc.Size
	}
	return c
}

func (c *staleCache) fault(w http.ResponseWriter, r *http.Request) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Method == http.MethodGet {
		c.gets++
	}
	if d := imagetest.UploadDigest(r); d != "" && !c.stubborn {
		delete(c.lying, d)
		return false
	}
	_, d, ok := strings.Cut(r.URL.Path, "/blobs/")
	size, lie := c.lying[d]
	if !ok || !lie {
		return false
	}
	switch r.Method {
	case http.MethodHead:
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Header().Set("Docker-Content-Digest", d)
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		// The announced length and no body: the server drops the
		// connection, the client reads EOF, as from distribution.
		w.Header().Set("Docker-Content-Digest", d)
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", size))
			w.Header().Set("Content-Length", "1")
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(size))
			w.WriteHeader(http.StatusOK)
		}
	default:
		return false
	}
	return true
}

// lostOrphan is the orphan of the field failure in a registry whose cache
// still claims every blob of it.
func lostOrphan(t *testing.T, f *healtest.Fixture, stubborn bool) (*imagetest.Object, *staleCache) {
	t.Helper()
	m1, _ := f.Orphan(t, imagetest.OCI)
	c := newStaleCache(stubborn, append(m1.Layers, *m1.Config)...)
	f.SetFault(c.fault)
	return m1, c
}

// TestHealReuploadsBlobsAStaleHeadClaims: the orphan's manifest is 404
// (loss), its blobs answer HEAD 200 from a stale cache. The heal must not
// take the HEAD on trust: it reads each blob's first byte, uploads every
// one, and the registry then serves the whole image.
func TestHealReuploadsBlobsAStaleHeadClaims(t *testing.T) {
	f := healtest.New(t)
	m1, _ := lostOrphan(t, f, false)

	res, err := f.Heal(t, "app", m1)
	if err != nil {
		t.Fatalf("heal: %v", err)
	}
	uploads := 0
	for _, r := range f.Log.Writes() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") {
			uploads++
		}
	}
	if uploads != len(m1.Layers)+1 || res.Pushed != len(m1.Layers)+2 {
		t.Errorf("%d blob uploads, %d nodes pushed; want all %d blobs uploaded and the manifest put", uploads, res.Pushed, len(m1.Layers)+1)
	}
	for _, b := range append(m1.Layers, *m1.Config) {
		got, err := imagetest.Get(t, f.Base, "app", "blobs", b.Desc.Digest.String())
		if err != nil || !bytes.Equal(got, b.Data) {
			t.Errorf("blob %s after the heal: %d bytes (err %v), want its %d", b.Desc.Digest, len(got), err, len(b.Data))
		}
	}
	if !res.ReadBack {
		t.Error("result does not say the closure was read back")
	}
}

// TestHealFailsWhenRegistryStillServesNothing: a registry that accepts
// every upload and still serves no byte makes the heal fail, naming the
// blobs, rather than report a heal a fresh node's pull will not survive.
func TestHealFailsWhenRegistryStillServesNothing(t *testing.T) {
	f := healtest.New(t)
	m1, _ := lostOrphan(t, f, true)

	_, err := f.Heal(t, "app", m1)
	if err == nil || !registry.IsUnserved(err) {
		t.Fatalf("heal error = %v, want one saying the registry does not serve the blobs", err)
	}
	for _, b := range append(m1.Layers, *m1.Config) {
		if !strings.Contains(err.Error(), b.Desc.Digest.String()) {
			t.Errorf("error does not name blob %s: %v", b.Desc.Digest, err)
		}
	}
}

// TestCheckFindsBlobsAStaleHeadClaims: a check (no fix) lists the blobs a
// stale cache claims as missing, not present, so the report matches what
// a fresh node's pull meets.
func TestCheckFindsBlobsAStaleHeadClaims(t *testing.T) {
	f := healtest.New(t)
	m1, _ := lostOrphan(t, f, false)

	rep := check(t, f, []heal.Target{f.Target("app", m1)})
	img := rep.Images[0]
	want := blobDigests(append(append(m1.Layers, *m1.Config), m1.Blob)...)
	if img.State != heal.StateHealable || !slices.Equal(digests(img.Missing), want) {
		t.Errorf("state %s, missing %v; want healable with the manifest and every blob %v", img.State, digests(img.Missing), want)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("check without fix wrote %v", w)
	}
}

// TestHealthyHealReadsNothing: with no manifest missing there is no
// evidence of loss: the heal costs one HEAD per manifest, as before, and
// no GET, even where a GET would have found a lie.
func TestHealthyHealReadsNothing(t *testing.T) {
	f := healtest.New(t)
	child := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 3, 128)
	idx := imagetest.Index(t, imagetest.OCI, child, imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 3, 128))
	imagetest.Push(t, f.Base, "app", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx)
	c := newStaleCache(false, child.Layers...)
	f.SetFault(c.fault)
	f.Log.Reset()

	res, err := f.Heal(t, "app", idx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Log.All()); n != 3 || c.gets != 0 || res.Requests != 3 {
		t.Errorf("healthy heal: %d requests (%d GETs), result says %d; want 3 HEADs, one per manifest, and no GET", n, c.gets, res.Requests)
	}
	if res.ReadBack {
		t.Error("a healthy heal read the closure back")
	}
}

// TestCheckFixAsksEachNodeOnce: `check --fix` and the sweep hand the
// check's plan to the heal, so each node is asked about once, not once by
// the check and again by the heal.
func TestCheckFixAsksEachNodeOnce(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)

	rep := check(t, f, []heal.Target{f.Target("app", m1)}, heal.WithFix(true))
	if img := rep.Images[0]; img.State != heal.StateHealthy {
		t.Fatalf("after the fix: state %s, fix %+v; want healthy", img.State, img.Fix)
	}
	asks, _ := asksAroundWrites(f.Log.All())
	for path, n := range asks {
		if n != 1 {
			t.Errorf("%s sent %d times before the fix wrote, want once", path, n)
		}
	}
	if want := len(m1.Layers) + 2; len(asks) != want { // manifest, config, layers
		t.Errorf("%d nodes asked, want %d: %v", len(asks), want, asks)
	}
}

// peerHeals is an Ownership that ranks this node second and, when first
// asked, does what the owning peer would: heals the root itself.
type peerHeals struct {
	once sync.Once
	heal func()
}

func (p *peerHeals) Turn(context.Context, heal.Target) (heal.Turn, error) {
	p.once.Do(p.heal)
	return heal.Turn{Rank: 1}, nil
}

func (p *peerHeals) Ask(_ context.Context, _ heal.Target, turn heal.Turn) (heal.Turn, error) {
	return turn, nil
}

// TestCheckFixDeferredPlansAgain: a fix that waits its turn behind a peer
// does not act on the check's plan, which the peer's heal made stale: it
// plans again, finds the root whole, and writes nothing.
func TestCheckFixDeferredPlansAgain(t *testing.T) {
	peer := &peerHeals{}
	f := healtest.New(t, heal.WithOwnership(peer, time.Minute, nil))
	m1, _ := f.Orphan(t, imagetest.OCI)
	peer.heal = func() {
		imagetest.Push(t, f.Base, "app", heal.RetentionTag(m1.Desc.Digest), m1)
		f.Log.Reset()
	}

	rep := check(t, f, []heal.Target{f.Target("app", m1)}, heal.WithFix(true))
	if img := rep.Images[0]; img.Found != heal.StateHealable || img.State != heal.StateHealthy {
		t.Errorf("found %s, state %s; want healable, then healthy", img.Found, img.State)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("the fix wrote after the peer healed the root: %v", w)
	}
}
