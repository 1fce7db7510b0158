package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// healBound is the most a heal of a small image may take under the
// injected faults, on 2 cores: generous, but a heal that hangs or backs off
// without limit fails it.
const healBound = 60 * time.Second

// assertHealed checks that the registry holds the orphan whole again, kept
// by its retention tag, with app:v1 untouched.
func assertHealed(t *testing.T, s *orphanScenario) {
	t.Helper()
	for _, d := range s.img.Blobs() {
		if !s.reg.BlobExists("app", d) {
			t.Errorf("blob %s not in the registry", d)
		}
	}
	if !s.reg.ManifestExists("app", s.d1) {
		t.Errorf("manifest %s not in the registry", s.d1)
	}
	if got, _ := s.reg.TagDigest("app", heal.RetentionTag(s.d1)); got != s.d1 {
		t.Errorf("retention tag = %q, want %s", got, s.d1)
	}
	if got, _ := s.reg.TagDigest("app", "v1"); got != s.idx.Digest {
		t.Errorf("app:v1 moved to %s", got)
	}
}

// assertCommittedOnce checks that reqs committed each blob of ds exactly
// once: no blob uploaded twice, none missing.
func assertCommittedOnce(t *testing.T, reqs []harness.Request, repo string, ds []digest.Digest) {
	t.Helper()
	committed := committedUploads(reqs)
	for _, d := range ds {
		if committed[d.String()] != 1 {
			t.Errorf("%s: blob %s committed %d times, want once", repo, d, committed[d.String()])
		}
	}
}

// assertRegistryIntact checks that every manifest the registry stores for
// repo parses and that everything it names is there: no half-written
// manifest, no index missing a child, no tag to nothing.
func assertRegistryIntact(t *testing.T, reg *harness.Registry, repo string) {
	t.Helper()
	revs := filepath.Join(reg.StorageDir(), "docker/registry/v2/repositories", repo, "_manifests/revisions/sha256")
	entries, err := os.ReadDir(revs)
	if err != nil {
		t.Fatalf("registry storage: %v", err)
	}
	for _, e := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		body, _, ok := reg.GetManifest(repo, d.String())
		if !ok {
			continue // deleted: its link is gone
		}
		if digest.FromBytes(body) != d {
			t.Errorf("manifest %s: stored bytes hash to %s", d, digest.FromBytes(body))
		}
		var doc struct {
			Config    *ocispec.Descriptor  `json:"config"`
			Layers    []ocispec.Descriptor `json:"layers"`
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Errorf("manifest %s does not parse: %v", d, err)
			continue
		}
		if doc.Config != nil && !reg.BlobExists(repo, doc.Config.Digest) {
			t.Errorf("manifest %s: config %s missing", d, doc.Config.Digest)
		}
		for _, l := range doc.Layers {
			if !reg.BlobExists(repo, l.Digest) {
				t.Errorf("manifest %s: layer %s missing", d, l.Digest)
			}
		}
		for _, c := range doc.Manifests {
			if !reg.ManifestExists(repo, c.Digest) {
				t.Errorf("index %s: child %s missing", d, c.Digest)
			}
		}
	}
}

// nodeSnapshot lists everything of node's containerd namespace that regmend
// must leave alone: every blob with its size, labels and update time (the
// metadata store's, moved only by writes), and every image record.
func nodeSnapshot(ctx context.Context, t *testing.T, node *harness.Containerd) string {
	t.Helper()
	cl := node.Client()
	nctx := namespaces.WithNamespace(ctx, node.Namespace())
	var lines []string
	err := cl.ContentStore().Walk(nctx, func(info ctrcontent.Info) error {
		var labels []string
		for k, v := range info.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		lines = append(lines, fmt.Sprintf("blob %s %d %s %s", info.Digest, info.Size, info.UpdatedAt.Format(time.RFC3339Nano), strings.Join(labels, ",")))
		return nil
	})
	if err != nil {
		t.Fatalf("walk node content: %v", err)
	}
	imgs, err := cl.ImageService().List(nctx)
	if err != nil {
		t.Fatalf("list node images: %v", err)
	}
	for _, img := range imgs {
		lines = append(lines, fmt.Sprintf("image %s %s %s", img.Name, img.Target.Digest, img.UpdatedAt.Format(time.RFC3339Nano)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// assertNodeUnchanged fails t if node differs from the snapshot before.
func assertNodeUnchanged(ctx context.Context, t *testing.T, node *harness.Containerd, before string) {
	t.Helper()
	if after := nodeSnapshot(ctx, t, node); after != before {
		t.Errorf("regmend changed containerd's content store or image records:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// assertNoDeletes fails t if regmend sent the registry a DELETE.
func assertNoDeletes(t *testing.T, reqs []harness.Request) {
	t.Helper()
	for _, r := range reqs {
		if r.Method == http.MethodDelete {
			t.Errorf("regmend sent %s %s", r.Method, r.URI)
		}
	}
}

// TestHealThroughFlakyRegistry: between regmend and the real registry, the
// proxy answers 503 and then 429 with Retry-After to the first upload starts
// and manifest PUTs, and drops the connection halfway through the first
// upload of every blob. `regmend heal` retries, backs off, and completes
// within a bound; the registry commits each blob once and ends up whole.
func TestHealThroughFlakyRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	p := startFaultProxy(t, s.reg)
	useProxy(s.nodeA, s.reg, p)
	var (
		mu              sync.Mutex
		starts, puts    int
		dropped         = map[string]bool{}
		refusedManifest int
	)
	p.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case isUploadStart(r):
			starts++
			switch starts {
			case 1:
				refuse(w, r, http.StatusServiceUnavailable, "1")
				return true
			case 2:
				refuse(w, r, http.StatusTooManyRequests, "1")
				return true
			}
		case isUploadPut(r):
			if d := uploadDigest(r.URL.String()); !dropped[d] {
				dropped[d] = true
				mu.Unlock()
				hangUp(t, w, r, 16<<10)
				mu.Lock()
				return true
			}
		case isManifestPut(r):
			puts++
			switch puts {
			case 1:
				refusedManifest++
				refuse(w, r, http.StatusServiceUnavailable, "")
				return true
			case 2, 3:
				refusedManifest++
				refuse(w, r, http.StatusTooManyRequests, "1")
				return true
			}
		}
		return false
	})
	before := len(s.reg.Requests())
	node := nodeSnapshot(ctx, t, s.nodeA)
	start := time.Now()
	out, code := regmend(ctx, t, s.nodeA, "heal", s.reg.Ref("app@"+s.d1.String()))
	took := time.Since(start)
	assertNodeUnchanged(ctx, t, s.nodeA, node)
	t.Logf("heal through the flaky registry: exit %d in %s", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("heal exit %d:\n%s", code, out)
	}
	if took > healBound {
		t.Errorf("heal took %s, over %s", took, healBound)
	}
	mu.Lock()
	if starts < 3 || len(dropped) != 3 || refusedManifest != 3 {
		t.Errorf("faults injected: %d upload starts (2 refused), %d uploads dropped (want 3: 2 layers, config), %d manifest PUTs refused (want 3)", starts, len(dropped), refusedManifest)
	}
	mu.Unlock()
	assertHealed(t, s)
	assertNoDeletes(t, s.reg.Requests()[before:])
	assertCommittedOnce(t, s.reg.Requests()[before:], "app", s.img.Blobs())
	assertRegistryIntact(t, s.reg, "app")
	fresh := harness.StartContainerd(t, harness.ContainerdOptions{Name: "fresh"})
	fresh.UseRegistry(s.reg)
	mustPull(ctx, t, fresh, s.reg.Ref("app@"+s.d1.String()))
}

// TestHealRepushesBlobCollectedBeforeManifest: a GC between regmend's blob
// upload and its manifest PUT (simulated by the proxy deleting a layer just
// before forwarding the PUT) makes the real registry refuse the manifest
// with MANIFEST_BLOB_UNKNOWN. The heal asks again, re-pushes the layer and
// then the manifest.
func TestHealRepushesBlobCollectedBeforeManifest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	p := startFaultProxy(t, s.reg)
	useProxy(s.nodeA, s.reg, p)
	lost := s.img.Layers[0]
	var once sync.Once
	p.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if isManifestPut(r) && strings.HasSuffix(r.URL.Path, "/"+s.d1.String()) {
			once.Do(func() {
				req, _ := http.NewRequest(http.MethodDelete, s.reg.URL()+"/v2/app/blobs/"+lost.String(), nil)
				req.Header.Set("User-Agent", harness.HarnessUserAgent)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != http.StatusAccepted {
					t.Errorf("delete layer %s before the manifest PUT: %v %v", lost, resp, err)
				}
			})
		}
		return false // forwarded: the real registry answers
	})
	before := len(s.reg.Requests())
	out, code := regmend(ctx, t, s.nodeA, "heal", s.reg.Ref("app@"+s.d1.String()))
	if code != 0 {
		t.Fatalf("heal exit %d:\n%s", code, out)
	}
	var refused, accepted int
	for _, r := range s.reg.Requests()[before:] {
		if r.Method == http.MethodPut && strings.Contains(r.URI, "/manifests/"+s.d1.String()) {
			switch r.Status {
			case http.StatusBadRequest:
				refused++
			case http.StatusCreated:
				accepted++
			}
		}
	}
	if refused != 1 || accepted != 1 {
		t.Errorf("manifest PUT refused %d times and accepted %d, want 1 and 1 (MANIFEST_BLOB_UNKNOWN, then after the re-push)", refused, accepted)
	}
	if !strings.Contains(s.reg.Log(), "MANIFEST_BLOB_UNKNOWN") && !strings.Contains(s.reg.Log(), "blob unknown") {
		t.Log("registry log does not name MANIFEST_BLOB_UNKNOWN")
	}
	assertHealed(t, s)
	assertRegistryIntact(t, s.reg, "app")
}

// TestHealKilledMidPush: `regmend heal` is SIGKILLed while a layer upload
// is in flight (the proxy slows uploads down). The registry holds no
// manifest whose blobs are missing; a rerun completes the heal.
func TestHealKilledMidPush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	p := startFaultProxy(t, s.reg)
	useProxy(s.nodeA, s.reg, p)
	inFlight := make(chan struct{})
	var once sync.Once
	p.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !isUploadPut(r) {
			return false
		}
		once.Do(func() { close(inFlight) })
		// Forward the body to the registry at 4 KiB every 100ms, so the
		// upload is half-written there when the process dies.
		r.Body = trickle{r.Body}
		return false
	})
	node := nodeSnapshot(ctx, t, s.nodeA)
	before := len(s.reg.Requests())
	cmd := exec.CommandContext(ctx, harness.ProductBinary(t, "regmend"),
		"-a", s.nodeA.Socket(), "-n", s.nodeA.Namespace(), "--hosts-dir", s.nodeA.HostsDir(), "heal", s.reg.Ref("app@"+s.d1.String()))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("no upload started within 30s")
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if s.reg.ManifestExists("app", s.d1) {
		t.Error("the killed heal left the manifest in the registry before its blobs")
	}
	assertRegistryIntact(t, s.reg, "app")

	p.setFault(nil)
	start := time.Now()
	out, code := regmend(ctx, t, s.nodeA, "heal", s.reg.Ref("app@"+s.d1.String()))
	if code != 0 {
		t.Fatalf("rerun exit %d:\n%s", code, out)
	}
	t.Logf("rerun after SIGKILL: %s", time.Since(start).Round(time.Millisecond))
	assertHealed(t, s)
	assertNoDeletes(t, s.reg.Requests()[before:])
	assertNodeUnchanged(ctx, t, s.nodeA, node)
	assertRegistryIntact(t, s.reg, "app")
}

// trickle reads at most 4 KiB every 100ms.
type trickle struct{ io.ReadCloser }

func (t trickle) Read(p []byte) (int, error) {
	time.Sleep(100 * time.Millisecond)
	return t.ReadCloser.Read(p[:min(len(p), 4<<10)])
}

// contentPath is a blob's file in a node's containerd content store.
func contentPath(node *harness.Containerd, d digest.Digest) string {
	return filepath.Join(node.Dir(), "root", "io.containerd.content.v1.content", "blobs", d.Algorithm().String(), d.Encoded())
}

// TestHealReportsDiscardedLayers: layers gone from the node's content store
// (as with CRI's discard_unpacked_layers; deleted here through containerd's
// API, as test setup). `regmend heal` names them unhealable, absent both
// locally and in the registry, and exits 3; the manifest is not pushed.
func TestHealReportsDiscardedLayers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	cs := s.nodeA.Client().ContentStore()
	nctx := namespaces.WithNamespace(ctx, s.nodeA.Namespace())
	for _, l := range s.img.Layers {
		if err := cs.Delete(nctx, l); err != nil {
			t.Fatalf("delete layer %s: %v", l, err)
		}
	}
	out, code := regmend(ctx, t, s.nodeA, "heal", s.reg.Ref("app@"+s.d1.String()))
	if code != 3 {
		t.Fatalf("heal exit %d, want 3 (partly healed):\n%s", code, out)
	}
	for _, l := range s.img.Layers {
		line := ""
		for _, ln := range strings.Split(out, "\n") {
			if f := strings.Fields(ln); len(f) > 2 && f[2] == l.String() { // STATUS KIND DIGEST ...
				line = ln
			}
		}
		if !strings.Contains(line, "unhealable") || !strings.Contains(line, "absent in the registry and in the local content store") || !strings.Contains(line, "discard_unpacked_layers") {
			t.Errorf("layer %s not reported unhealable and absent locally: %q", l, line)
		}
	}
	if s.reg.ManifestExists("app", s.d1) {
		t.Error("the manifest was pushed without its layers")
	}
	assertRegistryIntact(t, s.reg, "app")
}
