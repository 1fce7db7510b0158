package heal_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// TestDeferredRootAskedForByEveryBlob: a pull served through the mirror
// queues one job per digest, all of one root. With the default 2 workers,
// the root's manifest, config and first layer are queued, the root is
// deferred to a peer that never heals, then a root this node owns is
// queued: the owned root heals within the takeover bound, and the
// deferred one is taken over after it. (The jobs that joined the deferred
// heal used to keep their workers, and the takeover then waited for a
// worker that none would give back.)
func TestDeferredRootAskedForByEveryBlob(t *testing.T) {
	const after = 1500 * time.Millisecond
	ranks := &fixedRanks{ranks: map[digest.Digest]int{}, asked: map[digest.Digest]int{}}
	f := healtest.New(t, heal.WithOwnership(ranks, after, nil))
	deferred, _ := imagetest.Orphan(t, f.CS, f.Registry, "deferred", imagetest.OCI)
	owned, _ := imagetest.Orphan(t, f.CS, f.Registry, "owned", imagetest.OCI)
	ranks.ranks[deferred.Desc.Digest] = 1
	q, err := heal.NewQueue(f.Healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithQuietPeriod(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)

	start := time.Now()
	for _, d := range []digest.Digest{deferred.Desc.Digest, deferred.Config.Desc.Digest, deferred.Layers[0].Desc.Digest} {
		if !q.Enqueue(f.Host, "deferred", d) {
			t.Fatalf("enqueue %s refused", d)
		}
	}
	imagetest.WaitUntil(t, 5*time.Second, "the deferred root ranked", func() bool {
		ranks.mu.Lock()
		defer ranks.mu.Unlock()
		return ranks.asked[deferred.Desc.Digest] > 0
	})
	q.Enqueue(f.Host, "owned", owned.Desc.Digest)
	imagetest.WaitUntil(t, after, "the owned root healed within takeover_after", func() bool { return f.Has(t, "owned", "manifests", owned.Blob) })
	imagetest.WaitUntil(t, after+5*time.Second, "the deferred root taken over", func() bool { return f.Has(t, "deferred", "manifests", deferred.Blob) })
	if took := time.Since(start); took < after {
		t.Errorf("taken over after %s, before takeover_after %s", took, after)
	}
	f.AssertWhole(t, "deferred", deferred)
	f.AssertWhole(t, "owned", owned)
	imagetest.WaitUntil(t, 5*time.Second, "queue idle", func() bool { return q.Len() == 0 })
}

// unavailableOnce is the node's real content store, whose first walk of
// blob labels fails as containerd's API does while containerd restarts.
type unavailableOnce struct {
	ctrcontent.Store
	failed atomic.Bool
}

func (u *unavailableOnce) Walk(ctx context.Context, fn ctrcontent.WalkFunc, filters ...string) error {
	if u.failed.CompareAndSwap(false, true) {
		return fmt.Errorf("list content: connection refused: %w", errdefs.ErrUnavailable)
	}
	return u.Store.Walk(ctx, fn, filters...)
}

// TestLocalStoreFailureDoesNotBackOffRegistry: containerd unavailable
// while the queue finds what holds a digest says nothing of the registry:
// the registry's other heals are not dropped, and the digest is healed at
// its next request.
func TestLocalStoreFailureDoesNotBackOffRegistry(t *testing.T) {
	f := healtest.New(t)
	a, _ := imagetest.Orphan(t, f.CS, f.Registry, "a", imagetest.OCI)
	b, _ := imagetest.Orphan(t, f.CS, f.Registry, "b", imagetest.OCI)
	blobs := &unavailableOnce{Store: f.CS}
	q, err := heal.NewQueue(f.Healer, content.Local{Store: f.CS, Blobs: blobs}, heal.WithQuietPeriod(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)

	q.Enqueue(f.Host, "a", a.Config.Desc.Digest)
	imagetest.WaitUntil(t, 5*time.Second, "the failed job done", func() bool { return blobs.failed.Load() && q.Len() == 0 })
	if f.Has(t, "a", "manifests", a.Blob) {
		t.Fatal("healed although its roots could not be found")
	}
	if !q.Enqueue(f.Host, "b", b.Config.Desc.Digest) {
		t.Fatal("a heal of another repository of the registry was dropped after the local store failed")
	}
	if !q.Enqueue(f.Host, "a", a.Config.Desc.Digest) {
		t.Fatal("the digest whose roots could not be found was not asked again at its next request")
	}
	imagetest.WaitUntil(t, 5*time.Second, "both healed", func() bool {
		return f.Has(t, "a", "manifests", a.Blob) && f.Has(t, "b", "manifests", b.Blob)
	})
	f.AssertWhole(t, "a", a)
	f.AssertWhole(t, "b", b)
}

// unavailableReads is a content store whose reads fail with Unavailable
// (containerd restarting) while failing is set.
type unavailableReads struct {
	ctrcontent.Store
	failing atomic.Bool
	failed  atomic.Int32
}

func (u *unavailableReads) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	if u.failing.Load() {
		u.failed.Add(1)
		return nil, fmt.Errorf("read %s: connection refused: %w", desc.Digest, errdefs.ErrUnavailable)
	}
	return u.Store.ReaderAt(ctx, desc)
}

// TestLocalReadFailureDoesNotBackOffRegistry: containerd unavailable while
// a heal walks and reads the local closure says nothing of the registry
// either: its other heals are not dropped.
func TestLocalReadFailureDoesNotBackOffRegistry(t *testing.T) {
	f := healtest.New(t)
	a, _ := imagetest.Orphan(t, f.CS, f.Registry, "a", imagetest.OCI)
	b, _ := imagetest.Orphan(t, f.CS, f.Registry, "b", imagetest.OCI)
	reads := &unavailableReads{Store: f.CS}
	reads.failing.Store(true)
	h, err := heal.NewHealer(reads, f.Remote(t))
	if err != nil {
		t.Fatal(err)
	}
	q, err := heal.NewQueue(h, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithQuietPeriod(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)

	q.Enqueue(f.Host, "a", a.Config.Desc.Digest)
	imagetest.WaitUntil(t, 5*time.Second, "the failed job done", func() bool { return reads.failed.Load() > 0 && q.Len() == 0 })
	reads.failing.Store(false)
	if !q.Enqueue(f.Host, "b", b.Config.Desc.Digest) {
		t.Fatal("a heal of another repository of the registry was dropped after local reads failed")
	}
	imagetest.WaitUntil(t, 5*time.Second, "b healed", func() bool { return f.Has(t, "b", "manifests", b.Blob) })
	f.AssertWhole(t, "b", b)
}
