package heal_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

// dropAfter reads n bytes of the request body, then drops the connection
// without an answer, as a proxy or network failure would mid-upload.
func dropAfter(r *http.Request, n int64) {
	io.CopyN(io.Discard, r.Body, n)
	panic(http.ErrAbortHandler)
}

// TestHealSurvivesDroppedUploads: the first upload of every blob loses its
// connection halfway through the body. The heal starts those uploads again
// and completes; the registry commits each blob once, whole.
func TestHealSurvivesDroppedUploads(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	var mu sync.Mutex
	dropped := map[string]bool{}
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		d := imagetest.UploadDigest(r)
		if d == "" {
			return false
		}
		mu.Lock()
		first := !dropped[d]
		dropped[d] = true
		mu.Unlock()
		if first {
			dropAfter(r, 100)
		}
		return false
	})
	res, err := f.Heal(t, "app", m1)
	if err != nil {
		t.Fatalf("heal with dropped uploads: %v", err)
	}
	if len(dropped) != 4 {
		t.Errorf("dropped the uploads of %d blobs, want all 4 (3 layers, config)", len(dropped))
	}
	for _, b := range append(m1.Layers, *m1.Config) {
		if !f.Has(t, "app", "blobs", b) {
			t.Errorf("blob %s not restored", b.Desc.Digest)
		}
		got, err := imagetest.Get(t, f.Base, "app", "blobs", b.Desc.Digest.String())
		if err != nil || string(got) != string(b.Data) {
			t.Errorf("blob %s restored with other bytes (err %v)", b.Desc.Digest, err)
		}
	}
	created := 0
	for _, r := range f.Log.Writes() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") && r.Status == http.StatusCreated {
			created++
		}
	}
	if created != 4 {
		t.Errorf("%d blob uploads committed, want 4: each blob once, whole", created)
	}
	if !f.Has(t, "app", "manifests", m1.Blob) || res.Pushed != 5 {
		t.Errorf("heal incomplete: pushed %d, want 5", res.Pushed)
	}
}

// TestHealHonoursRetryAfterOnPush: after a 429 with Retry-After on a
// write, nothing more is sent to the registry before that time, not even
// a retry by another of the heal's requests.
func TestHealHonoursRetryAfterOnPush(t *testing.T) {
	for _, c := range []struct {
		name  string
		match func(r *http.Request) bool
	}{
		{"upload start", func(r *http.Request) bool {
			return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/")
		}},
		{"manifest put", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := healtest.New(t, heal.WithConcurrency(1), heal.WithUploads(1))
			m1, _ := f.Orphan(t, imagetest.OCI)
			const refusals = 2
			var (
				mu      sync.Mutex
				refused int
				lastNo  time.Time
				gaps    []time.Duration // from each refusal to the next request
			)
			f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				// A request whose body broke off is containerd re-sending a
				// PUT whose writer had already given up: it was released
				// before the client read the last answer, and never reads its
				// own. Only whole requests count.
				body, err := io.ReadAll(r.Body)
				whole := err == nil && int64(len(body)) == max(r.ContentLength, 0)
				r.Body = io.NopCloser(bytes.NewReader(body))
				mu.Lock()
				defer mu.Unlock()
				if !lastNo.IsZero() && whole {
					gaps = append(gaps, time.Since(lastNo))
					lastNo = time.Time{}
				}
				if !c.match(r) || refused == refusals {
					return false
				}
				refused++
				if whole {
					lastNo = time.Now()
				}
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			})
			start := time.Now()
			if _, err := f.Heal(t, "app", m1); err != nil {
				t.Fatalf("heal under 429: %v", err)
			}
			if !f.Has(t, "app", "manifests", m1.Blob) {
				t.Fatal("manifest not restored")
			}
			if refused != refusals || len(gaps) == 0 {
				t.Fatalf("refused %d requests (%d whole ones followed by another); want %d", refused, len(gaps), refusals)
			}
			for i, g := range gaps {
				if g < 900*time.Millisecond {
					t.Errorf("refusal %d: asked again after %s, though the registry said Retry-After: 1", i+1, g.Round(time.Millisecond))
				}
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("heal took %s", took)
			}
		})
	}
}

// TestHealRepushesBlobLostBeforeManifest: the registry loses a blob between
// its upload and the manifest PUT (a GC running in between), and refuses the
// manifest with MANIFEST_BLOB_UNKNOWN as distribution does. The heal asks
// again, re-pushes the blob, then the manifest.
func TestHealRepushesBlobLostBeforeManifest(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	lost := m1.Layers[0].Desc.Digest
	// Until the lost blob is uploaded again, every PUT of the manifest (by
	// digest, or at its retention tag) is refused, as distribution checks
	// a manifest's blobs whatever it is put at.
	var (
		mu         sync.Mutex
		once, gone bool
	)
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut { // the DELETE below comes through here too
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if imagetest.UploadDigest(r) == lost.String() {
			gone = false
		}
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		if !once {
			once, gone = true, true
			req, _ := http.NewRequest(http.MethodDelete, f.Base+"/v2/app/blobs/"+lost.String(), nil)
			if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
				t.Errorf("delete blob during the heal: %v %v", resp, err)
			}
		}
		if !gone {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":%q}]}`, lost)
		return true
	})
	res, err := f.Heal(t, "app", m1)
	if err != nil {
		t.Fatalf("heal: %v", err)
	}
	if !f.Has(t, "app", "blobs", m1.Layers[0]) || !f.Has(t, "app", "manifests", m1.Blob) {
		t.Fatal("the lost blob or the manifest is missing after the heal")
	}
	uploads, puts := 0, 0
	for _, r := range f.Log.Writes() {
		switch {
		case r.Method == http.MethodPut && strings.HasSuffix(r.Path, "/manifests/"+m1.Desc.Digest.String()):
			puts++
		case r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/"):
			uploads++
		}
	}
	if puts != 2 || uploads != 5 {
		t.Errorf("manifest PUT %d times and %d blob uploads, want 2 and 5 (4 blobs, then the lost one again)", puts, uploads)
	}
	if res.Pushed != 5 {
		t.Errorf("result pushed %d, want 5", res.Pushed)
	}
}

// TestChildUnknownSeesRegistryBody: the manifest PUT keeps the
// registry's error body in ErrUnexpectedStatus, which the re-plan reads.
func TestChildUnknownSeesRegistryBody(t *testing.T) {
	f := healtest.New(t, heal.WithConcurrency(1), heal.WithUploads(1))
	m1, _ := f.Orphan(t, imagetest.OCI)
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}`)
		return true
	})
	_, err := f.Heal(t, "app", m1)
	if !registry.IsChildUnknown(err) {
		t.Fatalf("heal err = %v; childUnknown does not see MANIFEST_BLOB_UNKNOWN", err)
	}
	puts := 0
	for _, r := range f.Log.Writes() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/manifests/") {
			puts++
		}
	}
	if puts != 3 {
		t.Errorf("manifest PUT %d times, want 3 (one per round, then give up)", puts)
	}
}

// TestHealInterruptedThenRerun: a heal stopped mid-upload leaves no
// manifest in the registry; a second heal completes it.
func TestHealInterruptedThenRerun(t *testing.T) {
	f := healtest.New(t, heal.WithConcurrency(1), heal.WithUploads(1))
	m1, _ := f.Orphan(t, imagetest.OCI)
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if imagetest.UploadDigest(r) == "" {
			return false
		}
		once.Do(func() {
			io.CopyN(io.Discard, r.Body, 10)
			cancel()                    // the CLI is interrupted while bytes are in flight
			io.Copy(io.Discard, r.Body) // until the client hangs up
		})
		return false
	})
	_, err := f.Healer.Heal(ctx, heal.Target{Registry: f.Host, Repository: "app", Root: m1.Root()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted heal err = %v, want canceled", err)
	}
	if f.Has(t, "app", "manifests", m1.Blob) {
		t.Fatal("an interrupted heal left the manifest in the registry before its blobs")
	}
	f.SetFault(nil)
	if _, err := f.Heal(t, "app", m1); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	f.AssertWhole(t, "app", m1)
}

// TestHealReportsLayersGoneLocally: with layers deleted from the local
// store (CRI's discard_unpacked_layers), the heal names them unhealable
// and pushes neither them nor the manifest above them.
func TestHealReportsLayersGoneLocally(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	for _, l := range m1.Layers {
		if err := f.CS.Delete(context.Background(), l.Desc.Digest); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.Heal(t, "app", m1)
	if !errdefs.IsNotFound(err) || res == nil {
		t.Fatalf("heal err = %v, want a partial heal (not found) with its result", err)
	}
	unhealable := map[digest.Digest]string{}
	for _, n := range res.Nodes {
		if n.Status == heal.StatusUnhealable {
			unhealable[n.Digest] = n.Reason
		}
	}
	for _, l := range m1.Layers {
		if r, ok := unhealable[l.Desc.Digest]; !ok || !strings.Contains(r, "local") {
			t.Errorf("layer %s: unhealable=%v reason %q, want unhealable, absent locally", l.Desc.Digest, ok, r)
		}
	}
	if _, ok := unhealable[m1.Desc.Digest]; !ok || len(unhealable) != 4 {
		t.Errorf("unhealable = %v, want the 3 layers and the manifest", unhealable)
	}
	if f.Has(t, "app", "manifests", m1.Blob) {
		t.Error("a manifest whose layers are gone everywhere was pushed")
	}
	for _, r := range f.Log.Writes() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/manifests/") {
			t.Errorf("manifest written: %v", r)
		}
	}
}

// TestHealGivesUpOnSilentRegistry: a registry that accepts connections and
// never answers (a hung proxy, a black-holed route) does not hang a heal:
// each request is abandoned once nothing moved for the stall timeout,
// retried as a transient failure, and the heal then fails, so the queue can
// back off.
func TestHealGivesUpOnSilentRegistry(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { io.Copy(io.Discard, c); c.Close() }) // reads, never answers
		}
	}()
	hostsDir := t.TempDir()
	imagetest.WriteHostsTOML(t, hostsDir, f.Host, fmt.Sprintf("server = %q\n", "http://"+ln.Addr().String()))
	remote, _ := registry.NewRemote(registry.WithHostsDir(hostsDir), registry.WithRetry(2, time.Millisecond), registry.WithStallTimeout(300*time.Millisecond))
	h, _ := heal.NewHealer(f.CS, remote)
	start := time.Now()
	_, err = h.Heal(context.Background(), heal.Target{Registry: f.Host, Repository: "app", Root: m1.Root()})
	took := time.Since(start)
	if err == nil || !registry.IsTransient(err) {
		t.Fatalf("heal against a silent registry: err = %v, want a transient failure", err)
	}
	if took > 5*time.Second {
		t.Errorf("heal against a silent registry took %s; each request must give up after the stall timeout", took)
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
}
