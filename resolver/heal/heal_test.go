package heal_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

func TestHealRestoresDanglingChild(t *testing.T) {
	f := healtest.New(t)
	child := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 512)
	other := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 512)
	idx := imagetest.Index(t, imagetest.OCI, child, other)
	imagetest.Push(t, f.Base, "app", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx, other.Desc.Digest) // node holds healtest.AMD64 only
	imagetest.Delete(t, f.Base, "app", "manifests", child.Desc.Digest)
	f.Log.Reset()

	res, err := f.Heal(t, "app", idx)
	if err != nil {
		t.Fatalf("heal: %v", err)
	}
	if !f.Has(t, "app", "manifests", child.Blob) {
		t.Fatal("child manifest not restored")
	}
	var puts []string
	for _, r := range f.Log.Writes() {
		puts = append(puts, r.Method+" "+r.Path)
	}
	want := "PUT /v2/app/manifests/" + child.Desc.Digest.String()
	if len(puts) != 1 || puts[0] != want {
		t.Errorf("writes = %q, want only %q (index and blobs untouched)", puts, want)
	}
	if got := imagetest.TagDigest(t, f.Base, "app", "v1"); got != idx.Desc.Digest {
		t.Errorf("tag v1 = %s, want the index %s", got, idx.Desc.Digest)
	}
	if res.Pushed != 1 || res.RootWasMissing || len(res.RetentionTags) != 0 {
		t.Errorf("result pushed=%d rootWasMissing=%v tags=%v, want 1 push, no retention tag", res.Pushed, res.RootWasMissing, res.RetentionTags)
	}
}

func TestHealOrphanBindsRetentionTag(t *testing.T) {
	for _, format := range []imagetest.Format{imagetest.OCI, imagetest.Docker} {
		t.Run([]string{"oci", "docker"}[format], func(t *testing.T) {
			f := healtest.New(t)
			m1, idx := f.Orphan(t, format)

			res, err := f.Heal(t, "app", m1)
			if err != nil {
				t.Fatalf("heal: %v", err)
			}
			f.AssertWhole(t, "app", m1)
			tag := heal.RetentionTag(m1.Desc.Digest)
			if got := imagetest.TagDigest(t, f.Base, "app", tag); got != m1.Desc.Digest {
				t.Errorf("retention tag %s = %q, want %s", tag, got, m1.Desc.Digest)
			}
			if got := imagetest.TagDigest(t, f.Base, "app", "v1"); got != idx.Desc.Digest {
				t.Errorf("tag v1 moved to %s, want it still on the index %s", got, idx.Desc.Digest)
			}
			body, err := imagetest.Get(t, f.Base, "app", "manifests", m1.Desc.Digest.String())
			if err != nil || string(body) != string(m1.Data) {
				t.Errorf("restored manifest bytes differ from the local ones (err %v)", err)
			}
			if res.Pushed != 5 || res.BytesPushed != m1.Desc.Size+m1.Config.Desc.Size+3*1024 {
				t.Errorf("pushed %d nodes, %d bytes; want 5 nodes and every byte of the image", res.Pushed, res.BytesPushed)
			}
			if len(res.RetentionTags) != 1 || res.RetentionTags[0] != tag {
				t.Errorf("result retention tags = %v, want [%s]", res.RetentionTags, tag)
			}
		})
	}
}

func TestHealLeavesFirst(t *testing.T) {
	f := healtest.New(t)
	a := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 256)
	b := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 256)
	inner := imagetest.Index(t, imagetest.OCI, a, b)
	outer := imagetest.Index(t, imagetest.OCI, inner, imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "s390x"), 1, 128))
	imagetest.WriteLocal(t, f.CS, f.Host, "nested", outer)

	if _, err := f.Heal(t, "nested", outer); err != nil {
		t.Fatalf("heal: %v", err)
	}
	// Position of each digest's successful write in the registry's log.
	at := map[string]int{}
	for i, r := range f.Log.All() {
		if r.Status == http.StatusCreated {
			at[r.Path[strings.LastIndex(r.Path, "/")+1:]] = i
		}
	}
	var check func(o *imagetest.Object)
	check = func(o *imagetest.Object) {
		pos, ok := at[o.Desc.Digest.String()]
		if !ok {
			t.Fatalf("%s was never written", o.Desc.Digest)
		}
		for _, c := range o.Children {
			check(c)
			if at[c.Desc.Digest.String()] > pos {
				t.Errorf("index %s written before its child %s", o.Desc.Digest, c.Desc.Digest)
			}
		}
		if len(o.Layers) > 0 {
			// Blob uploads end in a PUT to the upload location, not to the
			// digest, so count manifest PUTs after all blob PUTs instead.
			for _, r := range f.Log.All()[pos:] {
				if r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") {
					t.Errorf("manifest %s written before a blob upload finished", o.Desc.Digest)
				}
			}
		}
	}
	check(outer)
	if got := imagetest.TagDigest(t, f.Base, "nested", heal.RetentionTag(outer.Desc.Digest)); got != outer.Desc.Digest {
		t.Errorf("orphan root not tagged: %q", got)
	}
}

func TestHealNodeWithOnePlatform(t *testing.T) {
	f := healtest.New(t)
	mine := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 256)
	theirs := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 256)
	idx := imagetest.Index(t, imagetest.OCI, mine, theirs)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx, theirs.Desc.Digest)

	res, err := f.Heal(t, "app", idx)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("heal err = %v, want a not-found partial heal", err)
	}
	if res == nil {
		t.Fatal("a partial heal must still return its result")
	}
	if !f.Has(t, "app", "manifests", mine.Blob) {
		t.Error("the platform this node holds was not restored")
	}
	if f.Has(t, "app", "manifests", idx.Blob) {
		t.Error("the index was pushed although a child is absent everywhere")
	}
	unhealable := map[string]bool{}
	for _, n := range res.Nodes {
		if n.Status == heal.StatusUnhealable {
			unhealable[n.Digest.String()] = true
		}
	}
	if !unhealable[theirs.Desc.Digest.String()] || !unhealable[idx.Desc.Digest.String()] || len(unhealable) != 2 {
		t.Errorf("unhealable = %v, want exactly the healtest.ARM64 child and the index", unhealable)
	}
	// The index is gone, so the restored child needs its own tag to survive GC.
	if got := imagetest.TagDigest(t, f.Base, "app", heal.RetentionTag(mine.Desc.Digest)); got != mine.Desc.Digest {
		t.Errorf("restored child has no retention tag: %q", got)
	}
}

func TestHealHealthyRegistryWritesNothing(t *testing.T) {
	f := healtest.New(t)
	idx := imagetest.Index(t, imagetest.OCI, imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 3, 128), imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 3, 128))
	imagetest.Push(t, f.Base, "app", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx)
	f.Log.Reset()

	res, err := f.Heal(t, "app", idx)
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("healthy registry got writes: %v", w)
	}
	// One HEAD per manifest; blobs of held manifests are not asked.
	if n := len(f.Log.All()); n != 3 {
		t.Errorf("healthy heal cost %d requests, want 3 (one HEAD per manifest)", n)
	}
	if res.Pushed != 0 || res.Unhealable != 0 {
		t.Errorf("result %+v, want nothing pushed", res)
	}
}

// TestHealNeverPushesCorruptBlob: a layer whose bytes on disk no longer
// match its digest is never committed, nor the manifest above it, whether
// the heal reads it from the content directory or through the API.
func TestHealNeverPushesCorruptBlob(t *testing.T) {
	for _, path := range healtest.ReadPaths {
		t.Run(string(path), func(t *testing.T) {
			f := healtest.NewReading(t, path)
			m1, _ := f.Orphan(t, imagetest.OCI)
			bad := m1.Layers[1].Desc.Digest
			imagetest.Corrupt(t, f.CSRoot, bad)

			_, err := f.Heal(t, "app", m1)
			if !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), bad.String()) {
				t.Fatalf("heal err = %v, want data loss naming %s", err, bad)
			}
			if f.Has(t, "app", "blobs", m1.Layers[1]) {
				t.Error("corrupt blob was committed to the registry")
			}
			if f.Has(t, "app", "manifests", m1.Blob) {
				t.Error("manifest above a corrupt blob was pushed")
			}
			assertReadPath(t, f, path)
		})
	}
}

// TestHealOnEitherReadPath: the same heal, whole, from the content
// directory and through the API.
func TestHealOnEitherReadPath(t *testing.T) {
	for _, path := range healtest.ReadPaths {
		t.Run(string(path), func(t *testing.T) {
			f := healtest.NewReading(t, path)
			m1, _ := f.Orphan(t, imagetest.OCI)
			if _, err := f.Heal(t, "app", m1); err != nil {
				t.Fatal(err)
			}
			f.AssertWhole(t, "app", m1)
			assertReadPath(t, f, path)
		})
	}
}

// assertReadPath checks that blobs were read by path.
func assertReadPath(t *testing.T, f *healtest.Fixture, path healtest.ReadPath) {
	t.Helper()
	switch {
	case path == healtest.ReadDir && (f.API.Opens() != 0 || f.Dir.Fallbacks() != 0):
		t.Errorf("%d blobs opened through the API (%d fallbacks); want every one read from the directory", f.API.Opens(), f.Dir.Fallbacks())
	case path == healtest.ReadAPI && f.API.Opens() == 0:
		t.Error("no blob opened through the API")
	}
}

func TestHealRefusesToMoveRetentionTag(t *testing.T) {
	f := healtest.New(t)
	m1, idx := f.Orphan(t, imagetest.OCI)
	tag := heal.RetentionTag(m1.Desc.Digest)
	imagetest.PutManifest(t, f.Base, "app", tag, idx.Blob) // someone else's tag

	_, err := f.Heal(t, "app", m1)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("heal err = %v, want failed precondition", err)
	}
	if got := imagetest.TagDigest(t, f.Base, "app", tag); got != idx.Desc.Digest {
		t.Errorf("tag %s moved to %s", tag, got)
	}
}

func TestHealConcurrentCallersShareOneRun(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	release := make(chan struct{})
	var once, released sync.Once
	defer released.Do(func() { close(release) }) // also when the wait below fails
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		once.Do(func() { <-release }) // hold the first request until all callers wait
		return false
	})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := f.Heal(t, "app", m1)
			errs <- err
		})
	}
	imagetest.WaitUntil(t, 5*time.Second, "19 callers waiting for the first one's run", func() bool { return heal.Joined(f.Healer, f.Target("app", m1)) == 19 })
	released.Do(func() { close(release) })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	puts := 0
	for _, r := range f.Log.Writes() {
		if r.Method == http.MethodPut && strings.HasSuffix(r.Path, m1.Desc.Digest.String()) {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("manifest PUT %d times by 20 concurrent heals, want 1", puts)
	}
}

func TestHealRetriesTransientFailures(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	var mu sync.Mutex
	failed := map[string]int{}
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		key := r.Method + " " + r.URL.Path
		if strings.Contains(key, "/uploads/") {
			key = r.Method + " uploads"
		}
		if failed[key] >= 2 || r.Method == http.MethodHead {
			return false
		}
		failed[key]++
		if failed[key] == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return true
	})
	res, err := f.Heal(t, "app", m1)
	if err != nil {
		t.Fatalf("heal under 429/503: %v", err)
	}
	if !f.Has(t, "app", "manifests", m1.Blob) || res.Pushed != 5 {
		t.Errorf("heal incomplete under transient faults: %+v", res)
	}
}

func TestPlanWritesNothing(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	plan, err := f.Healer.Plan(context.Background(), heal.Target{Registry: f.Host, Repository: "app", Root: m1.Root()})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(plan.ToPush()); got != 5 {
		t.Errorf("plan pushes %d nodes, want 5", got)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("plan wrote to the registry: %v", w)
	}
}

func TestHealRefusesRegistryOutsideAllowList(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	remote, err := registry.NewRemote(registry.WithHostsDir(f.HostsDir), registry.WithRegistries("edge.example:5000"))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := heal.NewHealer(f.CS, remote)
	_, err = h.Heal(context.Background(), heal.Target{Registry: f.Host, Repository: "app", Root: m1.Root()})
	if !errdefs.IsPermissionDenied(err) {
		t.Fatalf("err = %v, want permission denied", err)
	}
	if n := len(f.Log.All()); n != 0 {
		t.Errorf("%d requests sent to a registry outside the allow-list", n)
	}
}

func TestHealReportsProgress(t *testing.T) {
	var got []heal.Progress
	f := healtest.New(t, heal.WithPushProgress(func(p heal.Progress) { got = append(got, p) }))
	m1, _ := f.Orphan(t, imagetest.OCI)
	if _, err := f.Heal(t, "app", m1); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d progress reports, want one per pushed node (5)", len(got))
	}
	last := got[len(got)-1]
	if last.Done != 5 || last.Total != 5 || last.BytesDone != last.BytesTotal || last.BytesTotal != m1.Desc.Size+m1.Config.Desc.Size+3*1024 {
		t.Errorf("last report %+v, want 5/5 and every byte", last)
	}
}
