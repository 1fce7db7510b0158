package heal_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// lateDenier denies every digest of repository entry once on is set: an
// entry the operator adds while a heal is under way.
type lateDenier struct {
	entry string
	on    atomic.Bool
	calls atomic.Int64 // with allow > 0: on after that many calls
	allow int64
}

func (d *lateDenier) Denied(registry, repo string, _ digest.Digest) (string, bool) {
	if d.allow > 0 && d.calls.Add(1) > d.allow {
		d.on.Store(true)
	}
	if d.on.Load() && registry+"/"+repo == d.entry {
		return d.entry, true
	}
	return "", false
}

// An entry added after the heal's first look (refuseRoot) but before its
// plan: the root is refused as a denied root is, and neither its manifest
// nor a retention tag goes back.
func TestHealRefusesRootDeniedAfterFirstLook(t *testing.T) {
	d := &lateDenier{allow: 1}
	f := healtest.New(t, heal.WithDeny(d))
	d.entry = f.Host + "/app"
	m1, _ := f.Orphan(t, imagetest.OCI)
	f.Log.Reset()
	res, err := f.Heal(t, "app", m1)
	if res != nil || !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), d.entry) {
		t.Fatalf("heal = %+v, %v; want refused, failed precondition, naming %s", res, err, d.entry)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("a root denied before its plan was written: %v", w)
	}
	if f.Has(t, "app", "manifests", m1.Blob) {
		t.Error("the denied root's manifest is back in the registry")
	}
}

// An entry added after the plan: no node is pushed once it is in force.
func TestHealPushesNothingDeniedAfterPlan(t *testing.T) {
	d := &lateDenier{}
	// The first blob pushed turns the entry on: the manifests, pushed
	// after every blob, come after it.
	f := healtest.New(t, heal.WithDeny(d), heal.WithPushProgress(func(heal.Progress) { d.on.Store(true) }))
	d.entry = f.Host + "/app"
	// Held only here: the registry lacks all of it.
	m1 := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 256)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", m1)
	_, err := f.Heal(t, "app", m1)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), d.entry) {
		t.Fatalf("heal = %v; want failed precondition naming %s", err, d.entry)
	}
	if f.Has(t, "app", "manifests", m1.Blob) {
		t.Error("a manifest denied after the plan was pushed")
	}
	if got := imagetest.TagDigest(t, f.Base, "app", heal.RetentionTag(m1.Desc.Digest)); got != "" {
		t.Errorf("retention tag bound to %s", got)
	}
}

// BindTag puts the root manifest: a denied root is refused before any PUT.
func TestBindTagRefusesDeniedRoot(t *testing.T) {
	d := &lateDenier{}
	f := healtest.New(t, heal.WithDeny(d))
	d.entry = f.Host + "/app"
	img := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 128)
	imagetest.Push(t, f.Base, "app", "", img)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", img)
	d.on.Store(true)
	f.Log.Reset()
	_, err := f.Healer.BindTag(context.Background(), f.Target("app", img), "v1", false)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), d.entry) {
		t.Fatalf("bind = %v; want failed precondition naming %s", err, d.entry)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("a denied root's tag was written: %v", w)
	}
	if got := imagetest.TagDigest(t, f.Base, "app", "v1"); got != "" {
		t.Errorf("tag v1 = %s, want absent", got)
	}
}
