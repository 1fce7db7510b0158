package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/resolver/peers"
	"github.com/regmend/regmend/test/e2e/harness"
)

// fleet is n nodes that all hold the orphan D1 (pulled app:v1 before its
// tag moved and GC reaped it), each reaching the registry through one
// counting proxy, with regmend serve in cluster mode on every node.
type fleet struct {
	reg   *harness.Registry
	proxy *faultProxy
	nodes []*harness.Containerd
	srvs  []*server
	addrs []string // peer endpoints
	img   harness.PushedImage
	idx   harness.PushedIndex

	mu        sync.Mutex
	uploads   map[string]int // upload PUTs by digest, as the proxy saw them
	manifests map[string]int // manifest PUTs by path
}

// fleetSize is the number of nodes for the fleet tests: 8, or
// $REGMEND_FLEET_SIZE.
func fleetSize(t *testing.T) int {
	if s := os.Getenv("REGMEND_FLEET_SIZE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			t.Fatalf("REGMEND_FLEET_SIZE=%q: want a number >= 2", s)
		}
		return n
	}
	return 8
}

func startFleet(ctx context.Context, t *testing.T, n int, extra ...string) *fleet {
	t.Helper()
	f := &fleet{reg: harness.StartRegistry(t, harness.RegistryOptions{}), uploads: map[string]int{}, manifests: map[string]int{}}
	for i := range n {
		node := harness.StartContainerd(t, harness.ContainerdOptions{Name: fmt.Sprintf("node%d", i), LogLevel: "info"})
		node.UseRegistry(f.reg)
		f.nodes = append(f.nodes, node)
	}
	f.img = harness.PushImage(ctx, t, f.reg.Ref("app:v1"), harness.ImageSpec{Layers: 2, LayerSize: 64 << 10})
	f.eachNode(t, func(_ int, node *harness.Containerd) error {
		_, err := node.Pull(ctx, f.reg.Ref("app:v1"))
		return err
	})
	f.idx = harness.PushIndex(ctx, t, f.reg.Ref("app:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}})
	f.reg.GarbageCollect()
	if f.reg.ManifestExists("app", f.img.Digest) {
		t.Fatalf("GC kept D1 %s", f.img.Digest)
	}

	f.proxy = startFaultProxy(t, f.reg)
	f.count(nil)
	tokenFile, _ := writePeerToken(t)
	// Every node's peer endpoint is opened first, so that each can name
	// all the others; each serve is handed its own.
	lns := make([]*harness.Listener, n)
	for i := range lns {
		lns[i] = harness.Listen(t)
		f.addrs = append(f.addrs, lns[i].Addr())
	}
	// Every regmend starts at once (a DaemonSet rolled out on a damaged
	// cluster); then each is waited for.
	for i, node := range f.nodes {
		// Registry traffic, containerd's and regmend's, goes through the
		// counting proxy from the start (a start-up sweep may push at once).
		useProxy(node, f.reg, f.proxy)
		args := []string{"--peer-token-file", tokenFile}
		for _, u := range peerURLs(f.addrs...) {
			args = append(args, "--peer", u)
		}
		srv := harness.StartServeProc(t, harness.ServeSpec{
			Node: node, Registry: f.reg.Addr(), Name: fmt.Sprintf("regmend-node%d", i),
			PeerListener: lns[i], Extra: append(args, extra...),
		})
		f.srvs = append(f.srvs, srv)
	}
	for i, srv := range f.srvs {
		srv.Await(t, 20*time.Second)
		useProxy(f.nodes[i], f.reg, f.proxy, harness.HostEntry(srv.Mirror, "pull", "resolve"))
	}
	return f
}

// count records registry writes through the proxy, then lets slow decide
// whether to slow the request down (nil: never).
func (f *fleet) count(slow func(r *http.Request) bool) {
	f.proxy.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		f.mu.Lock()
		switch {
		case isUploadPut(r):
			f.uploads[uploadDigest(r.URL.String())]++
		case isManifestPut(r):
			f.manifests[r.URL.Path]++
		}
		f.mu.Unlock()
		if slow != nil && slow(r) {
			r.Body = trickle{r.Body}
		}
		return false
	})
}

// eachNode runs fn on every node at once and fails the test with every error.
func (f *fleet) eachNode(t *testing.T, fn func(i int, node *harness.Containerd) error) {
	t.Helper()
	var wg sync.WaitGroup
	for i, node := range f.nodes {
		wg.Go(func() {
			if err := fn(i, node); err != nil {
				t.Errorf("node%d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// settled reports whether every deferred heal on the live nodes has ended.
// waitHealedOnce waits until no node has a heal pending, then checks that
// the counting proxy saw each blob of the orphan uploaded once and its
// manifest PUT once, whichever nodes healed.
func (f *fleet) waitHealedOnce(t *testing.T) {
	t.Helper()
	// Settled twice, a second apart: no heal was between its dequeue and
	// its ranking at the first look.
	waitFor(t, 60*time.Second, "every deferred heal ended", func() bool {
		if !f.settled(t, nil) {
			return false
		}
		time.Sleep(time.Second)
		return f.settled(t, nil)
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.img.Blobs() {
		if f.uploads[d.String()] != 1 {
			t.Errorf("blob %s uploaded %d times through the proxy, want once", d, f.uploads[d.String()])
		}
	}
	if got := f.manifests["/v2/app/manifests/"+f.img.Digest.String()]; got != 1 {
		t.Errorf("manifest PUT %d times, want once (all PUTs: %v)", got, f.manifests)
	}
}

func (f *fleet) settled(t *testing.T, dead map[int]bool) bool {
	for i, srv := range f.srvs {
		if dead[i] {
			continue
		}
		deferred := srv.Metric(t, "regmend_heals_deferred_total")
		ended := srv.Metric(t, "regmend_heals_done_by_peer_total") + srv.Metric(t, "regmend_heal_takeovers_total")
		if deferred != ended || srv.Metric(t, "regmend_heal_queue_depth") != 0 {
			return false
		}
	}
	return true
}

// owner is the index of the node that ranks first for d among all nodes.
func (f *fleet) owner(d digest.Digest) int {
	order := peers.Rendezvous(d, f.addrs)
	for i, a := range f.addrs {
		if a == order[0] {
			return i
		}
	}
	return -1
}

// TestFleetHealsOnce: 8 nodes hold an orphan; regmend starts on all of
// them at once and all pull it at once. Every pull succeeds, and the
// counting proxy in front of the registry sees each missing blob uploaded
// once and the manifest PUT once: one node heals, the others stand by.
func TestFleetHealsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n := fleetSize(t)
	setup := time.Now()
	f := startFleet(ctx, t, n)
	t.Logf("%d nodes holding the orphan, each with containerd and regmend: set up in %s", n, time.Since(setup).Round(time.Millisecond))

	ref := f.reg.Ref("app@" + f.img.Digest.String())
	start := time.Now()
	f.eachNode(t, func(_ int, node *harness.Containerd) error {
		if out, err := node.Pull(ctx, ref); err != nil {
			return fmt.Errorf("pull %s: %w\n%s", ref, err, out)
		}
		return nil
	})
	t.Logf("%d concurrent CRI pulls of the orphan: %s", n, time.Since(start).Round(time.Millisecond))
	waitRetained(t, f.reg, "app", f.img.Digest, 60*time.Second)
	t.Logf("registry healed %s after the pulls began", time.Since(start).Round(time.Millisecond))
	f.waitHealedOnce(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	assertHealedOnce(t, f.reg.Requests(), "app", f.img)
	var healers []int
	var deferred, takeovers float64
	for i, srv := range f.srvs {
		if srv.Metric(t, "regmend_heals_total", `result="healed"`) > 0 {
			healers = append(healers, i)
		}
		deferred += srv.Metric(t, "regmend_heals_deferred_total")
		takeovers += srv.Metric(t, "regmend_heal_takeovers_total")
	}
	t.Logf("healed by nodes %v (rendezvous owner node%d); deferred %v, takeovers %v", healers, f.owner(f.img.Digest), deferred, takeovers)
	if len(healers) != 1 || healers[0] != f.owner(f.img.Digest) {
		t.Errorf("healers %v, want only the owner node%d", healers, f.owner(f.img.Digest))
	}
	if takeovers != 0 {
		t.Errorf("%v takeovers with every node alive", takeovers)
	}
	assertRegistryIntact(t, f.reg, "app")
	if t.Failed() {
		f.logMetrics(t)
	}
}

// logMetrics logs every node's heal and ownership counters and the writes
// the proxy saw, to tell a duplicate heal from a retried request.
func (f *fleet) logMetrics(t *testing.T) {
	t.Helper()
	for i, srv := range f.srvs {
		var b strings.Builder
		for _, r := range []string{"healed", "nothing", "partial", "failed"} {
			fmt.Fprintf(&b, " %s=%v", r, srv.Metric(t, "regmend_heals_total", `result="`+r+`"`))
		}
		for _, m := range []string{"regmend_heals_deferred_total", "regmend_heals_done_by_peer_total", "regmend_heal_takeovers_total", "regmend_pushed_bytes_total"} {
			fmt.Fprintf(&b, " %s=%v", strings.TrimPrefix(m, "regmend_"), srv.Metric(t, m))
		}
		t.Logf("node%d (%s):%s", i, f.addrs[i], b.String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("upload PUTs by digest: %v; manifest PUTs: %v", f.uploads, f.manifests)
}

// TestFleetOwnerKilledMidHeal: the owner of the orphan is SIGKILLed while
// its first upload trickles through the proxy; the next holder in rank
// completes the heal within the documented bound for a dead owner (one
// re-check, one probe timeout, and the heal itself).
func TestFleetOwnerKilledMidHeal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const takeover = 4 * time.Second
	f := startFleet(ctx, t, 3, "--takeover-after", takeover.String())
	owner := f.owner(f.img.Digest)
	inFlight := make(chan struct{})
	var once sync.Once
	f.count(func(r *http.Request) bool {
		if !isUploadPut(r) {
			return false
		}
		once.Do(func() { close(inFlight) })
		return true
	})
	ref := f.reg.Ref("app@" + f.img.Digest.String())
	f.eachNode(t, func(_ int, node *harness.Containerd) error {
		_, err := node.Pull(ctx, ref)
		return err
	})
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatal("no upload started within 30s")
	}
	// The other holders' heals start after their pulls go quiet, which may
	// be after the owner's first upload: the kill must find them standing
	// by (ranked behind a live owner), or there is nothing to take over.
	// The owner's uploads trickle meanwhile.
	waitFor(t, 30*time.Second, "the other holders deferred to the owner", func() bool {
		for i, srv := range f.srvs {
			if i != owner && srv.Metric(t, "regmend_heals_deferred_total") < 1 {
				return false
			}
		}
		return true
	})
	if err := f.srvs[owner].Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	f.count(nil) // the survivors upload at full speed
	t.Logf("owner node%d killed mid-upload", owner)
	// Documented bound for a dead owner: one re-check (takeover_after/4,
	// at most 5s) plus one probe timeout, then the heal itself (here 10s,
	// generous for 128 KiB on a busy 2-core machine).
	bound := takeover/4 + peers.DefaultTimeout + 10*time.Second
	waitRetained(t, f.reg, "app", f.img.Digest, bound)
	took := time.Since(killed)
	t.Logf("healed %s after the owner was killed (bound %s: one re-check every %s, one probe timeout, the heal)", took.Round(time.Millisecond), bound, takeover/4)
	var takeovers float64
	for i, srv := range f.srvs {
		if i != owner {
			takeovers += srv.Metric(t, "regmend_heal_takeovers_total")
		}
	}
	if takeovers < 1 {
		t.Errorf("takeovers = %v, want at least 1", takeovers)
	}
	for _, d := range f.img.Blobs() {
		if !f.reg.BlobExists("app", d) {
			t.Errorf("blob %s missing after the takeover", d)
		}
	}
	assertRegistryIntact(t, f.reg, "app")
}

// TestFleetStartupSweepHealsOnce: regmend starts with its periodic sweep on
// 4 nodes that hold an orphan, and nothing pulls it. The start-up sweeps
// find the damage on every node; one node heals it (each missing blob
// uploaded once, the manifest PUT once), the others stand by.
func TestFleetStartupSweepHealsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := startFleet(ctx, t, 4, "--sweep-interval", "1h") // the first sweep runs within 5s of start
	waitRetained(t, f.reg, "app", f.img.Digest, 60*time.Second)
	f.waitHealedOnce(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	var deferred float64
	for _, srv := range f.srvs {
		deferred += srv.Metric(t, "regmend_heals_deferred_total")
	}
	t.Logf("start-up sweeps on 4 holders: %v heals deferred to the owner node%d", deferred, f.owner(f.img.Digest))
	assertRegistryIntact(t, f.reg, "app")
}
