// Package healtest is the fixture of the heal engine's tests and of the
// packages built on it: a real containerd local content store, a real
// in-memory registry behind a fault injector, and a Healer between them.
// It is for tests only.
package healtest

import (
	"context"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
)

// Fixture is a local store, a registry and a Healer from one to the other.
// The registry's fields (Base, Host, HostsDir, Log) and SetFault are
// promoted.
type Fixture struct {
	*imagetest.Registry
	CS     ctrcontent.Store
	CSRoot string // the store's directory, for corrupting blobs
	Healer *heal.Healer
	// API and Dir are the Healer's read path when built by NewReading.
	API *imagetest.APIStore
	Dir *content.Dir
}

// New returns a Fixture whose Healer retries 4 times, 1ms apart, and reads
// the local store directly (as the plugin build reads containerd's store
// in-process).
func New(t testing.TB, opts ...heal.HealerOption) *Fixture {
	t.Helper()
	f := &Fixture{Registry: imagetest.NewRegistry(t)}
	f.CS, f.CSRoot = imagetest.LocalStore(t)
	var err error
	if f.Healer, err = heal.NewHealer(f.CS, f.Remote(t), opts...); err != nil {
		t.Fatal(err)
	}
	return f
}

// ReadPath is how a fixture's Healer reads blobs, as `regmend heal` and
// `regmend serve` may.
type ReadPath string

// Read paths.
const (
	// ReadDir reads blobs from the store's directory (content.Dir), with
	// everything else asked of the store as over containerd's API: what
	// regmend does where containerd's content directory is readable.
	ReadDir ReadPath = "directory"
	// ReadAPI reads every blob as over containerd's gRPC API.
	ReadAPI ReadPath = "api"
)

// ReadPaths are both read paths, for tests that must hold on each.
var ReadPaths = []ReadPath{ReadDir, ReadAPI}

// NewReading returns a Fixture whose Healer reads blobs by path. f.API
// counts the blobs opened through the API; f.Dir is the directory reader
// (nil for ReadAPI).
func NewReading(t testing.TB, path ReadPath, opts ...heal.HealerOption) *Fixture {
	t.Helper()
	f := &Fixture{Registry: imagetest.NewRegistry(t)}
	f.CS, f.CSRoot = imagetest.LocalStore(t)
	f.API = imagetest.OverAPI(f.CS)
	var store content.Store = f.API
	if path == ReadDir {
		d, err := content.OpenDir(f.API, f.CSRoot)
		if err != nil {
			t.Fatal(err)
		}
		f.Dir, store = d, d
	}
	var err error
	if f.Healer, err = heal.NewHealer(store, f.Remote(t), opts...); err != nil {
		t.Fatal(err)
	}
	return f
}

// Remote returns a registry client for the fixture's registry, retrying 4
// times 1ms apart unless opts say otherwise.
func (f *Fixture) Remote(t testing.TB, opts ...registry.Option) *registry.Remote {
	t.Helper()
	base := []registry.Option{registry.WithHostsDir(f.HostsDir), registry.WithRetry(4, time.Millisecond)}
	r, err := registry.NewRemote(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Target names o in repo of the fixture's registry.
func (f *Fixture) Target(repo string, o *imagetest.Object) heal.Target {
	return heal.Target{Registry: f.Host, Repository: repo, Root: o.Root()}
}

// Heal heals o in repo with the fixture's Healer.
func (f *Fixture) Heal(t testing.TB, repo string, o *imagetest.Object) (*heal.Result, error) {
	t.Helper()
	return f.Healer.Heal(context.Background(), f.Target(repo, o))
}

// Has reports whether the registry holds b in repo under kind
// ("manifests" or "blobs").
func (f *Fixture) Has(t testing.TB, repo, kind string, b imagetest.Blob) bool {
	t.Helper()
	return imagetest.Has(t, f.Base, repo, kind, b.Desc.Digest.String())
}

// AssertWhole fails the test for each blob of o (its document included)
// the registry lacks in repo.
func (f *Fixture) AssertWhole(t testing.TB, repo string, o *imagetest.Object) {
	t.Helper()
	for _, b := range o.Blobs() {
		kind := "blobs"
		if b.Desc.Digest == o.Desc.Digest {
			kind = "manifests"
		}
		if !f.Has(t, repo, kind, b) {
			t.Errorf("%s %s not in the registry", kind, b.Desc.Digest)
		}
	}
}

// Orphan reproduces the field failure in repository "app" (see
// imagetest.Orphan).
func (f *Fixture) Orphan(t testing.TB, format imagetest.Format) (m1, idx *imagetest.Object) {
	t.Helper()
	return imagetest.Orphan(t, f.CS, f.Registry, "app", format)
}

// RunQueue runs q's workers in namespace k8s.io until the test ends.
func RunQueue(t testing.TB, q *heal.Queue) {
	t.Helper()
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), "k8s.io"))
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// Platforms the fixtures use.
var (
	AMD64 = imagetest.Platform("linux", "amd64")
	ARM64 = imagetest.Platform("linux", "arm64")
)
