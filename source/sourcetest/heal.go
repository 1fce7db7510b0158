package sourcetest

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
)

// Destination is an empty in-memory registry a test heals into, with a
// Healer reading src.
type Destination struct {
	*imagetest.Registry
	Healer *heal.Healer
}

// NewDestination starts an empty registry and a Healer from src into it,
// retrying 4 times 1ms apart.
func NewDestination(t *testing.T, src source.Source, opts ...heal.HealerOption) *Destination {
	t.Helper()
	d := &Destination{Registry: imagetest.NewRegistry(t)}
	remote, err := registry.NewRemote(registry.WithHostsDir(d.HostsDir), registry.WithRetry(4, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if d.Healer, err = heal.NewHealer(src, remote, opts...); err != nil {
		t.Fatal(err)
	}
	return d
}

// Heal heals the fixture's index into repo of the destination.
func (d *Destination) Heal(t *testing.T, repo string, f *Fixture) (*heal.Result, error) {
	t.Helper()
	return d.Healer.Heal(Context(t), heal.Target{Registry: d.Host, Repository: repo, Root: f.Image.Root()})
}

// Holds reports whether the destination holds b in repo.
func (d *Destination) Holds(t *testing.T, repo string, f *Fixture, b imagetest.Blob) bool {
	t.Helper()
	kind := "blobs"
	if b.Desc.Digest == f.Image.Desc.Digest || contains(manifests(f.Image), b.Desc.Digest) {
		kind = "manifests"
	}
	return imagetest.Has(t, d.Base, repo, kind, b.Desc.Digest.String())
}

func manifests(o *imagetest.Object) []imagetest.Blob {
	out := []imagetest.Blob{o.Blob}
	for _, c := range o.Children {
		out = append(out, manifests(c)...)
	}
	return out
}

// testHeal: a heal from the source into an empty registry pushes the whole
// closure, and the source is as it was.
func testHeal(t *testing.T, open Opener) {
	f, src := opened(t, open, 64<<10)
	dst := NewDestination(t, src)
	res, err := dst.Heal(t, "app", f)
	if err != nil {
		t.Fatalf("heal from %s: %v", src, err)
	}
	if !res.Healed() || res.Pushed+res.Mounted != len(f.Blobs()) {
		t.Errorf("heal from %s: pushed %d, mounted %d, unhealable %d; want all %d", src, res.Pushed, res.Mounted, res.Unhealable, len(f.Blobs()))
	}
	for _, b := range f.Blobs() {
		if !dst.Holds(t, "app", f, b) {
			t.Errorf("destination lacks %s after the heal", b.Desc.Digest)
		}
	}
	if ch := f.Changes(t); len(ch) > 0 {
		t.Errorf("healing from %s changed it: %v", src, ch)
	}
}

// testDamaged: a blob damaged in the source is reported, naming it, and
// never reaches the destination; nor does any manifest above it.
func testDamaged(t *testing.T, open Opener, pick func(*Fixture) imagetest.Blob, how Damage) {
	f, src := opened(t, open, 64<<10)
	bad := pick(f)
	f.Damage(t, bad.Desc.Digest, how)
	dst := NewDestination(t, src)
	res, err := dst.Heal(t, "app", f)
	if err == nil {
		t.Fatalf("heal from %s with %s %s: no error", src, how, bad.Desc.Digest)
	}
	if !strings.Contains(err.Error(), bad.Desc.Digest.String()) && reason(res, bad.Desc.Digest) == "" {
		t.Errorf("heal from %s with %s %s: %v; reported without naming it", src, how, bad.Desc.Digest, err)
	}
	t.Logf("heal from %s with %s %s: %v (reason %q)", src, how, bad.Desc.Digest, err, reason(res, bad.Desc.Digest))
	for _, b := range []imagetest.Blob{bad, f.Image.Children[0].Blob, f.Image.Blob} {
		if dst.Holds(t, "app", f, b) {
			t.Errorf("destination holds %s (%s in the source, or above it)", b.Desc.Digest, how)
		}
	}
}

// reason is what res says about d, when it is not healed.
func reason(res *heal.Result, d digest.Digest) string {
	if res == nil {
		return ""
	}
	for _, n := range res.Nodes {
		if n.Digest == d && n.Status != heal.StatusPushed && n.Status != heal.StatusMounted && n.Status != heal.StatusPresent {
			return n.Reason
		}
	}
	return ""
}
