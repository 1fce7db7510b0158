package mirror

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// TestMirrorUnderLoad: 100 concurrent pulls through the mirror, hits
// (manifests, whole layers, ranges) and misses (absent digests, tags, other
// repositories) mixed, over five reaped images. Every hit is served whole,
// every miss is a 404, the heap grows by a bounded amount, and each image is
// healed once: one manifest PUT per root, each blob uploaded once.
func TestMirrorUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	f, q, srv, _ := mirrorFixture(t)
	const (
		images   = 5
		layers   = 3
		size     = 256 << 10
		requests = 100
	)
	var roots []*imagetest.Object
	for i := range images {
		m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, layers, size)
		imagetest.WriteLocal(t, f.CS, f.Host, fmt.Sprintf("load%d", i), m)
		roots = append(roots, m)
	}
	var (
		mu      sync.Mutex
		uploads = map[string]int{}
		puts    = map[string]int{}
	)
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if d := imagetest.UploadDigest(r); d != "" {
			uploads[d]++
		}
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			puts[r.URL.Path]++
		}
		return false
	})

	type pull struct {
		path, rng string
		want      []byte // nil: a miss
	}
	var pulls []pull
	for i := range requests {
		n := (i / 5) % images // every image gets every kind of request
		m, repo := roots[n], fmt.Sprintf("load%d", n)
		l := m.Layers[i%layers]
		switch i % 5 {
		case 0:
			pulls = append(pulls, pull{"/v2/" + repo + "/manifests/" + m.Desc.Digest.String(), "", m.Data})
		case 1:
			pulls = append(pulls, pull{"/v2/" + repo + "/blobs/" + l.Desc.Digest.String(), "", l.Data})
		case 2:
			from := rand.IntN(size - 1024)
			pulls = append(pulls, pull{"/v2/" + repo + "/blobs/" + l.Desc.Digest.String(), fmt.Sprintf("bytes=%d-%d", from, from+1023), l.Data[from : from+1024]})
		case 3:
			pulls = append(pulls, pull{"/v2/" + repo + "/blobs/" + digest.FromString(fmt.Sprint(i)).String(), "", nil})
		case 4:
			other := fmt.Sprintf("load%d", (n+1)%images) // held, but pulled from another repository
			pulls = append(pulls, pull{"/v2/" + other + "/manifests/" + m.Desc.Digest.String(), "", nil})
		}
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range pulls {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodGet, srv.URL+p.path+"?ns="+f.Host, nil)
			if p.rng != "" {
				req.Header.Set("Range", p.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("GET %s: %v", p.path, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				t.Errorf("GET %s: read: %v", p.path, err)
			case p.want == nil && resp.StatusCode != http.StatusNotFound:
				t.Errorf("GET %s (a miss) = %d, want 404", p.path, resp.StatusCode)
			case p.want != nil && (resp.StatusCode != 200 && resp.StatusCode != 206 || string(body) != string(p.want)):
				t.Errorf("GET %s (Range %q) = %d with %d bytes, want the content", p.path, p.rng, resp.StatusCode, len(body))
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("%d concurrent pulls in %s; heap in use grew by %d KiB at peak", requests, took.Round(time.Millisecond), growth>>10)
	// The images total 3.75 MiB; every request and the heals behind them
	// together must stay well within a small multiple of what they move.
	if limit := int64(64 << 20); growth > limit {
		t.Errorf("heap in use grew by %d MiB under %d concurrent pulls, over %d MiB", growth>>20, requests, limit>>20)
	}

	imagetest.WaitUntil(t, 30*time.Second, "every image healed", func() bool {
		for i, m := range roots {
			if !imagetest.Has(t, f.Base, fmt.Sprintf("load%d", i), "manifests", heal.RetentionTag(m.Desc.Digest)) {
				return false
			}
		}
		return q.Len() == 0
	})
	mu.Lock()
	defer mu.Unlock()
	for i, m := range roots {
		p := fmt.Sprintf("/v2/load%d/manifests/%s", i, m.Desc.Digest)
		if puts[p] != 1 {
			t.Errorf("root %d: manifest PUT %d times, want one heal", i, puts[p])
		}
		for _, b := range append(m.Layers, *m.Config) {
			if n := uploads[b.Desc.Digest.String()]; n != 1 {
				t.Errorf("root %d: blob %s uploaded %d times, want 1", i, b.Desc.Digest, n)
			}
		}
	}
	for p := range puts {
		if !strings.HasPrefix(p, "/v2/load") {
			t.Errorf("unexpected manifest PUT %s", p)
		}
	}
}
