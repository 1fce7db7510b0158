package heal_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

func check(t *testing.T, f *healtest.Fixture, targets []heal.Target, opts ...heal.CheckOption) *heal.CheckReport {
	t.Helper()
	rep, err := f.Healer.Check(context.Background(), targets, opts...)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if len(rep.Images) != len(targets) {
		t.Fatalf("check reported %d images for %d targets", len(rep.Images), len(targets))
	}
	return rep
}

func digests(nodes []heal.NodeResult) []digest.Digest {
	var out []digest.Digest
	for _, n := range nodes {
		out = append(out, n.Digest)
	}
	slices.Sort(out)
	return out
}

func blobDigests(bs ...imagetest.Blob) []digest.Digest {
	var out []digest.Digest
	for _, b := range bs {
		out = append(out, b.Desc.Digest)
	}
	slices.Sort(out)
	return out
}

func TestCheckHealthyCostsOneHeadPerManifest(t *testing.T) {
	for _, tc := range []struct {
		name string
		deep bool
		want int
	}{
		{name: "default", want: 3},           // the index and its two manifests
		{name: "deep", deep: true, want: 11}, // and each manifest's config and 3 layers
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := healtest.New(t, heal.WithDeepCheck(tc.deep))
			idx := imagetest.Index(t, imagetest.OCI, imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 3, 128), imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 3, 128))
			imagetest.Push(t, f.Base, "app", "v1", idx)
			imagetest.WriteLocal(t, f.CS, f.Host, "app", idx)
			f.Log.Reset()

			rep := check(t, f, []heal.Target{f.Target("app", idx)})
			img := rep.Images[0]
			if img.State != heal.StateHealthy || img.Found != heal.StateHealthy || len(img.Missing) != 0 || len(img.Unhealable) != 0 {
				t.Errorf("image %+v, want healthy with nothing listed", img)
			}
			if !rep.Healthy() || rep.Deep != tc.deep || rep.Counts["healthy"] != 1 || len(rep.Counts) != len(heal.States) {
				t.Errorf("report healthy=%v deep=%v counts=%v", rep.Healthy(), rep.Deep, rep.Counts)
			}
			reqs := f.Log.All()
			for _, r := range reqs {
				if r.Method != http.MethodHead {
					t.Errorf("check sent %s %s, want HEADs only", r.Method, r.Path)
				}
			}
			if len(reqs) != tc.want {
				t.Errorf("check of one healthy image cost %d requests, want %d", len(reqs), tc.want)
			}
		})
	}
}

func TestCheckOrphanIsHealable(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)

	img := check(t, f, []heal.Target{f.Target("app", m1)}).Images[0]
	if img.State != heal.StateHealable {
		t.Fatalf("state %s (%s), want healable", img.State, img.Error)
	}
	if got, want := digests(img.Missing), blobDigests(m1.Blobs()...); !slices.Equal(got, want) {
		t.Errorf("missing %v, want the manifest, config and layers %v", got, want)
	}
	if want := m1.Desc.Size + m1.Config.Desc.Size + 3*1024; img.MissingBytes != want {
		t.Errorf("missing bytes %d, want %d", img.MissingBytes, want)
	}
	if img.Fix != nil || len(f.Log.Writes()) != 0 {
		t.Errorf("a check without fix wrote: %v", f.Log.Writes())
	}
}

func TestCheckDanglingChildIsHealable(t *testing.T) {
	f := healtest.New(t)
	child := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 512)
	other := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 512)
	idx := imagetest.Index(t, imagetest.OCI, child, other)
	imagetest.Push(t, f.Base, "app", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx, other.Desc.Digest)
	imagetest.Delete(t, f.Base, "app", "manifests", child.Desc.Digest)

	img := check(t, f, []heal.Target{f.Target("app", idx)}).Images[0]
	if img.State != heal.StateHealable {
		t.Fatalf("state %s, want healable", img.State)
	}
	// The child's blobs are still in the registry: only the manifest is lost.
	if got := digests(img.Missing); !slices.Equal(got, blobDigests(child.Blob)) || img.MissingBytes != child.Desc.Size {
		t.Errorf("missing %v (%d bytes), want only the child %s", got, img.MissingBytes, child.Desc.Digest)
	}
}

func TestCheckAbsentEverywhereIsBroken(t *testing.T) {
	f := healtest.New(t)
	mine := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 256)
	theirs := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 256)
	idx := imagetest.Index(t, imagetest.OCI, mine, theirs)
	imagetest.Push(t, f.Base, "app", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx, theirs.Desc.Digest)
	imagetest.Delete(t, f.Base, "app", "manifests", theirs.Desc.Digest) // a platform this node never pulled

	img := check(t, f, []heal.Target{f.Target("app", idx)}).Images[0]
	if img.State != heal.StateBroken || len(img.Missing) != 0 {
		t.Fatalf("state %s, missing %v; want broken with nothing healable", img.State, img.Missing)
	}
	if len(img.Unhealable) != 1 || img.Unhealable[0].Digest != theirs.Desc.Digest || !strings.Contains(img.Unhealable[0].Reason, "absent") {
		t.Errorf("unhealable %+v, want the healtest.ARM64 child, absent in both places", img.Unhealable)
	}
}

func TestCheckFixesHealablePartOfBrokenImage(t *testing.T) {
	f := healtest.New(t)
	mine := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 256)
	theirs := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 256)
	idx := imagetest.Index(t, imagetest.OCI, mine, theirs)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", idx, theirs.Desc.Digest) // registry holds nothing

	img := check(t, f, []heal.Target{f.Target("app", idx)}, heal.WithFix(true)).Images[0]
	if img.Found != heal.StateBroken || img.State != heal.StateBroken {
		t.Fatalf("found %s, state %s; want broken before and after the fix", img.Found, img.State)
	}
	if got := digests(img.Missing); !slices.Equal(got, blobDigests(mine.Blobs()...)) {
		t.Errorf("healable part %v, want the healtest.AMD64 manifest and its blobs", got)
	}
	if got := digests(img.Unhealable); !slices.Equal(got, blobDigests(theirs.Blob, idx.Blob)) {
		t.Errorf("unhealable %v, want the healtest.ARM64 child and the index", got)
	}
	if img.Fix == nil || img.Fix.Error != "" || !slices.Equal(digests(img.Fix.Pushed), blobDigests(mine.Blobs()...)) {
		t.Fatalf("fix %+v, want the healtest.AMD64 part pushed without error", img.Fix)
	}
	if !slices.Equal(digests(img.Fix.Left), blobDigests(theirs.Blob, idx.Blob)) {
		t.Errorf("left after fix %v, want the healtest.ARM64 child and the index", digests(img.Fix.Left))
	}
	if !f.Has(t, "app", "manifests", mine.Blob) {
		t.Error("the healtest.AMD64 manifest was not pushed")
	}
}

func TestCheckUnreachableRegistry(t *testing.T) {
	f := healtest.New(t)
	healthy := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.Push(t, f.Base, "app", "v1", healthy)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", healthy)

	dead := httptest.NewServer(http.NotFoundHandler())
	deadHost := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	imagetest.WriteHostsTOML(t, f.HostsDir, deadHost, fmt.Sprintf("server = %q\n", dead.URL))
	a := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	b := imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 1, 64)
	imagetest.WriteLocal(t, f.CS, deadHost, "app", a)
	imagetest.WriteLocal(t, f.CS, deadHost, "other", b)

	rep := check(t, f, []heal.Target{
		f.Target("app", healthy),
		{Registry: deadHost, Repository: "app", Root: a.Root()},
		{Registry: deadHost, Repository: "other", Root: b.Root()},
	}, heal.WithFix(true), heal.WithImageConcurrency(1))
	if rep.Images[0].State != heal.StateHealthy {
		t.Errorf("image on the live registry: %s, want healthy", rep.Images[0].State)
	}
	if !strings.HasPrefix(rep.Images[2].Error, "not asked") {
		t.Errorf("second image of a registry found down: %q, want it not asked again", rep.Images[2].Error)
	}
	for _, img := range rep.Images[1:] {
		if img.State != heal.StateUnreachable || !strings.Contains(img.Error, deadHost) || img.Fix != nil {
			t.Errorf("image %s: state %s, error %q, fix %v; want unreachable naming %s, no fix", img.Image, img.State, img.Error, img.Fix, deadHost)
		}
	}
	if rep.Failed() != 2 || rep.Healthy() || rep.Counts["unreachable"] != 2 {
		t.Errorf("failed %d, counts %v; want 2 unreachable", rep.Failed(), rep.Counts)
	}
}

func TestCheckFixThenHealthy(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	child := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 128)
	idx := imagetest.Index(t, imagetest.OCI, child, imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 2, 128))
	imagetest.Push(t, f.Base, "multi", "v1", idx)
	imagetest.WriteLocal(t, f.CS, f.Host, "multi", idx, idx.Children[1].Desc.Digest)
	imagetest.Delete(t, f.Base, "multi", "manifests", child.Desc.Digest)
	targets := []heal.Target{f.Target("app", m1), f.Target("multi", idx)}

	var calls []int
	rep := check(t, f, targets, heal.WithFix(true), heal.WithProgress(func(done, total int, _ *heal.ImageReport) {
		calls = append(calls, done*10+total)
	}))
	for _, img := range rep.Images {
		if img.Found != heal.StateHealable || img.State != heal.StateHealthy || img.Fix == nil || len(img.Fix.Pushed) != len(img.Missing) {
			t.Errorf("%s: found %s, state %s, fix %+v; want healable then healthy, every missing node pushed", img.Image, img.Found, img.State, img.Fix)
		}
	}
	if tags := rep.Images[0].Fix.RetentionTags; len(tags) != 1 || tags[0] != heal.RetentionTag(m1.Desc.Digest) {
		t.Errorf("orphan retention tags %v, want its retention tag", tags)
	}
	if !rep.Healthy() || rep.Damaged() != 0 || rep.Failed() != 0 {
		t.Errorf("report after fix: counts %v", rep.Counts)
	}
	if !slices.Equal(calls, []int{12, 22}) {
		t.Errorf("progress calls %v, want done 1 then 2 of 2", calls)
	}

	f.Log.Reset()
	again := check(t, f, targets)
	if !again.Healthy() {
		t.Errorf("second check: %v, want all healthy", again.Counts)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("second check wrote %v", w)
	}
}

func TestCheckStopsOnRegistryOutsideAllowList(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	remote, err := registry.NewRemote(registry.WithHostsDir(f.HostsDir), registry.WithRegistries("edge.example:5000"))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := heal.NewHealer(f.CS, remote)
	_, err = h.Check(context.Background(), []heal.Target{f.Target("app", m1)}, heal.WithFix(true))
	if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), m1.Desc.Digest.String()) {
		t.Fatalf("err = %v, want permission denied naming the image", err)
	}
	if n := len(f.Log.All()); n != 0 {
		t.Errorf("%d requests sent to a registry outside the allow-list", n)
	}
}

func TestCheckOptionsRejectBadConcurrency(t *testing.T) {
	f := healtest.New(t)
	if _, err := f.Healer.Check(context.Background(), nil, heal.WithImageConcurrency(0)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("err = %v, want invalid argument", err)
	}
	rep := check(t, f, nil)
	if !rep.Healthy() || rep.Images == nil {
		t.Errorf("empty check: %+v, want healthy with an empty image list", rep)
	}
}

func TestCheckReportsFailedFix(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	imagetest.Corrupt(t, f.CSRoot, m1.Layers[0].Desc.Digest)

	rep := check(t, f, []heal.Target{f.Target("app", m1)}, heal.WithFix(true))
	img := rep.Images[0]
	if img.State != heal.StateHealable || img.Fix == nil || !strings.Contains(img.Fix.Error, m1.Layers[0].Desc.Digest.String()) {
		t.Fatalf("state %s, fix %+v; want still healable, the fix error naming the corrupt layer", img.State, img.Fix)
	}
	if rep.Failed() != 1 || rep.Damaged() != 1 {
		t.Errorf("failed %d, damaged %d; want 1 and 1", rep.Failed(), rep.Damaged())
	}
	if f.Has(t, "app", "blobs", m1.Layers[0]) {
		t.Error("corrupt layer was committed")
	}
}
