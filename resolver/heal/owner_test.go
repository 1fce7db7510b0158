package heal_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// fixedRanks ranks this node by root: absent roots rank 0.
type fixedRanks struct {
	mu    sync.Mutex
	ranks map[digest.Digest]int
	asked map[digest.Digest]int
}

func (f *fixedRanks) Turn(_ context.Context, t heal.Target) (heal.Turn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[t.Root.Digest]++
	return heal.Turn{Rank: f.ranks[t.Root.Digest]}, nil
}

// Ask: the holders before this node never say they heal.
func (f *fixedRanks) Ask(_ context.Context, t heal.Target, turn heal.Turn) (heal.Turn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return heal.Turn{Rank: f.ranks[t.Root.Digest], Ahead: turn.Ahead}, nil
}

// TestDeferredHealHandsItsWorkerBack: with one worker, a heal deferred to
// a peer that never heals does not hold the worker: a root this node owns,
// queued after it, heals at once; the deferred one is taken over after
// takeover_after without progress.
func TestDeferredHealHandsItsWorkerBack(t *testing.T) {
	const after = 1500 * time.Millisecond
	ranks := &fixedRanks{ranks: map[digest.Digest]int{}, asked: map[digest.Digest]int{}}
	f := healtest.New(t, heal.WithOwnership(ranks, after, nil))
	deferred, _ := imagetest.Orphan(t, f.CS, f.Registry, "deferred", imagetest.OCI)
	owned, _ := imagetest.Orphan(t, f.CS, f.Registry, "owned", imagetest.OCI)
	ranks.ranks[deferred.Desc.Digest] = 1
	q, err := heal.NewQueue(f.Healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithWorkers(1), heal.WithQuietPeriod(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)

	start := time.Now()
	q.Enqueue(f.Host, "deferred", deferred.Desc.Digest)
	imagetest.WaitUntil(t, 5*time.Second, "the deferred root ranked", func() bool {
		ranks.mu.Lock()
		defer ranks.mu.Unlock()
		return ranks.asked[deferred.Desc.Digest] > 0
	})
	q.Enqueue(f.Host, "owned", owned.Desc.Digest)
	imagetest.WaitUntil(t, 5*time.Second, "the owned root healed", func() bool { return f.Has(t, "owned", "manifests", owned.Blob) })
	if took := time.Since(start); took >= after {
		t.Errorf("the owned root healed after %s: it waited for the deferred one's worker", took)
	}
	if f.Has(t, "deferred", "manifests", deferred.Blob) {
		t.Fatal("the deferred root healed before its takeover time")
	}
	imagetest.WaitUntil(t, after+5*time.Second, "the deferred root taken over", func() bool { return f.Has(t, "deferred", "manifests", deferred.Blob) })
	if took := time.Since(start); took < after {
		t.Errorf("taken over after %s, before takeover_after %s", took, after)
	}
	imagetest.WaitUntil(t, 5*time.Second, "queue idle", func() bool { return q.Len() == 0 })
}

// TestDeferredCheckHandsItsSlotBack: a sweep (Check with fix) that checks
// one image at a time heals the root it owns while the heal of a root
// deferred to a peer waits its turn.
func TestDeferredCheckHandsItsSlotBack(t *testing.T) {
	const after = 1500 * time.Millisecond
	ranks := &fixedRanks{ranks: map[digest.Digest]int{}, asked: map[digest.Digest]int{}}
	f := healtest.New(t, heal.WithOwnership(ranks, after, nil))
	deferred, _ := imagetest.Orphan(t, f.CS, f.Registry, "deferred", imagetest.OCI)
	owned, _ := imagetest.Orphan(t, f.CS, f.Registry, "owned", imagetest.OCI)
	ranks.ranks[deferred.Desc.Digest] = 1

	ownedAt := make(chan time.Duration, 1)
	start := time.Now()
	rep, err := f.Healer.Check(context.Background(), []heal.Target{f.Target("deferred", deferred), f.Target("owned", owned)},
		heal.WithFix(true), heal.WithImageConcurrency(1),
		heal.WithProgress(func(_, _ int, img *heal.ImageReport) {
			if img.Target.Repository == "owned" {
				ownedAt <- time.Since(start)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if took := <-ownedAt; took >= after {
		t.Errorf("the owned image was fixed after %s: it waited for the deferred one's slot", took)
	}
	if took := time.Since(start); took < after {
		t.Errorf("the sweep ended after %s, before the deferred heal's takeover at %s", took, after)
	}
	for _, img := range rep.Images {
		if img.State != heal.StateHealthy || img.Fix == nil || len(img.Fix.Pushed) == 0 {
			t.Errorf("%s: %s, fix %+v; want healthy after pushing", img.Image, img.State, img.Fix)
		}
	}
}
