package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestConcurrentPullsThroughMirror: several CRI pulls at once of reaped
// digests (four orphans, each pulled twice at the same time) all succeed
// through `regmend serve`; each orphan is healed once (one manifest PUT)
// and each blob committed to the registry once; serve's memory stays
// bounded.
func TestConcurrentPullsThroughMirror(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA"})
	node.UseRegistry(reg)
	var orphans []harness.PushedImage
	for i := range 4 {
		repo := fmt.Sprintf("load%d", i)
		img := harness.PushImage(ctx, t, reg.Ref(repo+":v1"), harness.ImageSpec{Layers: 2, LayerSize: 256 << 10})
		mustPull(ctx, t, node, reg.Ref(repo+":v1"))
		harness.PushImage(ctx, t, reg.Ref(repo+":v1"), harness.ImageSpec{Layers: 1, LayerSize: 1024}) // the tag moves on
		orphans = append(orphans, img)
	}
	reg.GarbageCollect()
	for i, img := range orphans {
		if reg.ManifestExists(fmt.Sprintf("load%d", i), img.Digest) {
			t.Fatalf("GC kept %s", img.Digest)
		}
	}
	srv := startServe(t, node, reg)
	useMirror(ctx, t, node, reg, srv)
	before := len(reg.Requests())

	var wg sync.WaitGroup
	start := time.Now()
	for i, img := range orphans {
		ref := reg.Ref(fmt.Sprintf("load%d@%s", i, img.Digest))
		for range 2 {
			wg.Go(func() {
				if out, err := node.Pull(ctx, ref); err != nil {
					t.Errorf("concurrent pull %s: %v\n%s", ref, err, out)
				}
			})
		}
	}
	wg.Wait()
	t.Logf("8 concurrent CRI pulls of 4 reaped digests through the mirror: %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, 60*time.Second, "every orphan healed", func() bool {
		for i, img := range orphans {
			if d, ok := reg.TagDigest(fmt.Sprintf("load%d", i), heal.RetentionTag(img.Digest)); !ok || d != img.Digest {
				return false
			}
		}
		return true
	})
	reqs := reg.Requests()[before:]
	assertNoDeletes(t, reqs)
	for i, img := range orphans {
		assertCommittedOnce(t, reqs, fmt.Sprintf("load%d", i), img.Blobs())
		puts := 0
		for _, r := range reqs {
			if r.Method == http.MethodPut && strings.Contains(r.URI, fmt.Sprintf("/v2/load%d/manifests/%s", i, img.Digest)) {
				puts++
			}
		}
		if puts != 1 {
			t.Errorf("load%d: manifest PUT %d times, want one heal", i, puts)
		}
		assertRegistryIntact(t, reg, fmt.Sprintf("load%d", i))
	}
	if hwm := peakRSS(t, srv.Proc.Pid()); hwm > 128<<20 {
		t.Errorf("regmend serve peak RSS %d MiB, over 128 MiB", hwm>>20)
	} else {
		t.Logf("regmend serve peak RSS %d MiB", hwm>>20)
	}
}

// peakRSS reads a process's high-water resident set size.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("process status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
