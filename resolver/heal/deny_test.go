package heal_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// denyFixture is a fixture whose Healer obeys a deny list; set the list's
// entries with set before healing.
func denyFixture(t *testing.T) (*healtest.Fixture, *prometheus.Registry, func(entries ...string)) {
	t.Helper()
	var list *deny.List
	reg := prometheus.NewRegistry()
	f := healtest.New(t, heal.WithDeny(deny.NewMetrics(reg).Counting(deny.WhereHeal, listFunc(func() *deny.List { return list }))))
	return f, reg, func(entries ...string) {
		l, err := deny.Parse("deny", strings.NewReader(strings.Join(entries, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		list = l
	}
}

// listFunc denies what the list it returns denies (the list is set after
// the fixture, which needs the registry's host, is built).
type listFunc func() *deny.List

func (f listFunc) Denied(registry, repo string, d digest.Digest) (string, bool) {
	return f().Denied(registry, repo, d)
}

func TestHealRefusesDeniedRoot(t *testing.T) {
	f, reg, set := denyFixture(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	for _, entry := range []string{m1.Desc.Digest.String(), f.Host + "/app", f.Host + "/app@" + m1.Desc.Digest.String()} {
		set("# revoked", entry)
		f.Log.Reset()
		res, err := f.Heal(t, "app", m1)
		if res != nil || !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), entry) {
			t.Errorf("entry %s: heal = %v, %v; want refused, failed precondition, naming the entry", entry, res, err)
		}
		if reqs := f.Log.All(); len(reqs) != 0 {
			t.Errorf("entry %s: a refused heal asked the registry %d times", entry, len(reqs))
		}
	}
	if f.Has(t, "app", "manifests", m1.Blob) {
		t.Error("a denied root was pushed")
	}
	if got := imagetest.Metric(t, reg, "regmend_denied_total", "where", deny.WhereHeal); got != 3 {
		t.Errorf("regmend_denied_total{where=heal} = %v, want 3", got)
	}
	// Lifted, it heals.
	set()
	if _, err := f.Heal(t, "app", m1); err != nil {
		t.Fatalf("heal once lifted: %v", err)
	}
	f.AssertWhole(t, "app", m1)
}

// A denied child of an allowed index is skipped, the rest is healed, and
// the heal says it is partial and why.
func TestHealSkipsDeniedNode(t *testing.T) {
	f, _, set := denyFixture(t)
	revoked := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 512)
	kept := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 512)
	idx := imagetest.Index(t, imagetest.OCI, revoked, kept)
	imagetest.Push(t, f.Base, "app", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx)
	for _, m := range []*imagetest.Object{revoked, kept} {
		imagetest.Delete(t, f.Base, "app", "manifests", m.Desc.Digest)
	}
	entry := f.Host + "/app@" + revoked.Desc.Digest.String()
	set(entry)

	res, err := f.Heal(t, "app", idx)
	if !errdefs.IsNotFound(err) || res == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("heal = %v; want a partial heal naming the denial", err)
	}
	if !f.Has(t, "app", "manifests", kept.Blob) {
		t.Error("the allowed child was not healed")
	}
	if f.Has(t, "app", "manifests", revoked.Blob) {
		t.Error("the denied child was pushed")
	}
	if res.Denied != 1 || res.Healed() || res.Pushed != 1 {
		t.Errorf("result denied=%d pushed=%d healed=%v; want 1 denied, 1 pushed, not healed", res.Denied, res.Pushed, res.Healed())
	}
	for _, n := range res.Nodes {
		if n.Digest == revoked.Desc.Digest && (n.Status != heal.StatusDenied || !strings.Contains(n.Reason, entry)) {
			t.Errorf("denied child reported %s %q; want status denied naming %s", n.Status, n.Reason, entry)
		}
	}

	// The index itself lost too: it cannot be pushed without its child.
	imagetest.Delete(t, f.Base, "app", "manifests", idx.Desc.Digest)
	res, err = f.Heal(t, "app", idx)
	if !errdefs.IsNotFound(err) || res.Unhealable != 1 || res.Denied != 1 {
		t.Fatalf("heal of the lost index = %+v, %v; want the index unhealable and its child denied", res, err)
	}
	if f.Has(t, "app", "manifests", idx.Blob) {
		t.Error("an index was pushed without its denied child")
	}
}

// check sees a denied image as broken, naming the entry, and --fix pushes
// none of it; the queue refuses it without backing the registry off.
func TestCheckAndQueueObeyDeny(t *testing.T) {
	f, reg, set := denyFixture(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	set(f.Host + "/app")
	rep, err := f.Healer.Check(context.Background(), []heal.Target{f.Target("app", m1)}, heal.WithFix(true))
	if err != nil {
		t.Fatal(err)
	}
	img := rep.Images[0]
	if img.State != heal.StateBroken || len(img.Missing) != 0 || len(img.Unhealable) == 0 || img.Fix != nil {
		t.Fatalf("check: state %s, %d missing, %d unhealable, fix %+v; want broken, nothing to fix", img.State, len(img.Missing), len(img.Unhealable), img.Fix)
	}
	for _, n := range img.Unhealable {
		if n.Status != heal.StatusDenied || !strings.Contains(n.Reason, f.Host+"/app") {
			t.Errorf("node %s: %s %q, want denied naming the entry", n.Digest, n.Status, n.Reason)
		}
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("check --fix of a denied image wrote %v", w)
	}

	q, err := heal.NewQueue(f.Healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithQuietPeriod(time.Millisecond), heal.WithQueueMetrics(heal.NewMetrics(reg)))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)
	q.Enqueue(f.Host, "app", m1.Layers[0].Desc.Digest)
	imagetest.WaitUntil(t, 10*time.Second, "the queue's heal refused", func() bool {
		return imagetest.Metric(t, reg, "regmend_heals_total", "result", "denied") == 1
	})
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("the queue healed a denied image: %v", w)
	}
	// Lifted, the next request heals it: a refusal is not remembered as a
	// recent heal (DefaultRecheckAfter is minutes).
	set()
	q.Enqueue(f.Host, "app", m1.Layers[0].Desc.Digest)
	imagetest.WaitUntil(t, 10*time.Second, "healed once lifted", func() bool { return f.Has(t, "app", "manifests", m1.Blob) })
}

// A heal the deny list left partial is not remembered as a recent heal:
// once the entry is lifted, the next request heals the rest.
func TestQueueHealsOnceDenyOfChildLifted(t *testing.T) {
	f, reg, set := denyFixture(t)
	revoked := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 512)
	kept := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 512)
	idx := imagetest.Index(t, imagetest.OCI, revoked, kept)
	imagetest.Push(t, f.Base, "app", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx)
	for _, m := range []*imagetest.Object{revoked, kept} {
		imagetest.Delete(t, f.Base, "app", "manifests", m.Desc.Digest)
	}
	set(f.Host + "/app@" + revoked.Desc.Digest.String())

	q, err := heal.NewQueue(f.Healer, content.Local{Store: f.CS, Blobs: f.CS}, heal.WithQuietPeriod(time.Millisecond), heal.WithQueueMetrics(heal.NewMetrics(reg)))
	if err != nil {
		t.Fatal(err)
	}
	healtest.RunQueue(t, q)
	layer := revoked.Layers[0].Desc.Digest
	q.Enqueue(f.Host, "app", layer)
	imagetest.WaitUntil(t, 10*time.Second, "a partial heal", func() bool {
		return imagetest.Metric(t, reg, "regmend_heals_total", "result", "partial") == 1
	})
	if !f.Has(t, "app", "manifests", kept.Blob) || f.Has(t, "app", "manifests", revoked.Blob) {
		t.Fatal("the partial heal did not push the allowed child alone")
	}
	set()
	q.Enqueue(f.Host, "app", layer)
	imagetest.WaitUntil(t, 10*time.Second, "healed once lifted", func() bool { return f.Has(t, "app", "manifests", revoked.Blob) })
}
