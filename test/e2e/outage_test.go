package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestServeWhileRegistryDown: with the registry unreachable (the proxy's
// port refuses), a CRI pull of the reaped digest still succeeds through
// regmend's mirror; heals back off, the queue stays within its size and the
// metrics say what was dropped; when the registry is back, it is healed.
func TestServeWhileRegistryDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	p := startFaultProxy(t, s.reg)
	const queueSize = 2
	srv := startServe(t, s.nodeA, s.reg, "--queue-size", fmt.Sprint(queueSize), "--workers", "1")
	useProxy(s.nodeA, s.reg, p, harness.HostEntry(srv.Mirror, "pull", "resolve"))
	p.down()

	ref := s.reg.Ref("app@" + s.d1.String())
	mustPull(ctx, t, s.nodeA, ref)
	// A burst of requests for everything the node holds of the image.
	digests := append([]digest.Digest{s.d1}, s.img.Blobs()...)
	maxDepth := 0.0
	for round := range 5 {
		for i, d := range digests {
			kind := "blobs"
			if i == 0 {
				kind = "manifests"
			}
			resp, err := http.Head(srv.Mirror + "/v2/app/" + kind + "/" + d.String() + "?ns=" + s.reg.Addr())
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("round %d: mirror HEAD %s: %v %v", round, d, resp, err)
			}
			resp.Body.Close()
			maxDepth = max(maxDepth, srv.Metric(t, "regmend_heal_queue_depth"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor(t, 30*time.Second, "a heal failed against the unreachable registry", func() bool {
		return srv.Metric(t, "regmend_heals_total", `result="failed"`) >= 1
	})
	dropped := srv.Metric(t, "regmend_heal_queue_dropped_total")
	failed := srv.Metric(t, "regmend_heals_total", `result="failed"`)
	t.Logf("registry down: %v heal requests dropped, %v heals failed, max queue depth %v", dropped, failed, maxDepth)
	if dropped == 0 {
		t.Error("regmend_heal_queue_dropped_total = 0 after a burst while the registry was down")
	}
	if maxDepth > queueSize {
		t.Errorf("regmend_heal_queue_depth reached %v, over --queue-size %d", maxDepth, queueSize)
	}
	if failed > 2 {
		t.Errorf("%v heals ran against the unreachable registry; after the first they must back off", failed)
	}
	if strings.Contains(srv.Proc.Log(), `"level":"panic"`) || strings.Contains(srv.Proc.Log(), "goroutine ") {
		t.Error("regmend serve panicked")
	}

	p.up()
	waitFor(t, 60*time.Second, "registry healed after it came back", func() bool {
		mustPull(ctx, t, s.nodeA, ref) // each pull asks regmend again, past the backoff
		d, ok := s.reg.TagDigest("app", heal.RetentionTag(s.d1))
		return ok && d == s.d1
	})
	assertHealed(t, s)
}

// TestServeAcrossContainerdRestart: containerd restarts under a running
// `regmend serve`. While it is down the mirror answers 404, never 5xx; the
// request also leaves regmend's gRPC connection backing off, as a heal or
// the sweep's event subscription would. Right after containerd is back, a
// CRI pull of a reaped digest through the mirror works (regmend reconnects),
// and the registry is healed.
func TestServeAcrossContainerdRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	srv := startServe(t, s.nodeA, s.reg)
	useMirror(ctx, t, s.nodeA, s.reg, srv)
	s.nodeA.Stop()
	start := time.Now()
	resp, err := http.Head(srv.Mirror + "/v2/app/manifests/" + s.d1.String() + "?ns=" + s.reg.Addr())
	if err != nil {
		t.Fatalf("mirror with containerd down: %v", err)
	}
	resp.Body.Close()
	t.Logf("mirror with containerd down: %d after %s", resp.StatusCode, time.Since(start).Round(time.Millisecond))
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("mirror answered %d with containerd down, want 404 (never 5xx)", resp.StatusCode)
	}
	s.nodeA.Start()
	start = time.Now()
	mustPull(ctx, t, s.nodeA, s.reg.Ref("app@"+s.d1.String()))
	t.Logf("pull through the mirror right after the restart: %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "registry healed after the restart", func() bool {
		d, ok := s.reg.TagDigest("app", heal.RetentionTag(s.d1))
		return ok && d == s.d1
	})
	assertHealed(t, s)
	if srv.Proc.Exited() {
		t.Fatal("regmend serve exited when containerd restarted")
	}
}
