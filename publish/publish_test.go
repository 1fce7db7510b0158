package publish_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/publish"
)

// TestWriteIndexRestoresDeletedChild is issue 18: a per-arch child of a
// tagged index is deleted with its blobs (as registry GC does);
// remote.WriteIndex finds
// the index present and restores nothing; publish.WriteIndex restores the
// child, and a fresh node can pull it by digest.
func TestWriteIndexRestoresDeletedChild(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    format
	}{{"oci", ociFormat}, {"docker manifest list", dockerFormat}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := imagetest.NewRegistry(t)
			amd64, arm64 := image(t, tc.f, "amd64", 2), image(t, tc.f, "arm64", 2)
			ii := platformIndex(t, tc.f, amd64, arm64)
			r := ref(t, reg, "app:v1")
			if err := remote.WriteIndex(r, ii); err != nil {
				t.Fatal(err)
			}
			lost := dig(t, arm64)
			collect(t, reg, "app", arm64)
			if err := remote.WriteIndex(r, ii); err != nil {
				t.Fatal(err)
			}
			if imagetest.Has(t, reg.Base, "app", "manifests", lost.String()) {
				t.Fatal("remote.WriteIndex restored the child: the premise of issue 18 no longer holds")
			}

			reg.Log.Reset()
			if err := publish.WriteIndex(r, ii); err != nil {
				t.Fatalf("publish.WriteIndex: %v", err)
			}
			// The child's config and 2 layers (a POST and a PUT each), then
			// the child; the index and the tag were there already.
			w := writes(reg.Log.All())
			if len(w) != 7 || w[6] != "PUT /v2/app/manifests/"+lost.String() {
				t.Errorf("writes %v, want the child's 3 blobs uploaded, then the child put, and nothing else", w)
			}
			if err := pullImage(t, reg, "app", lost); err != nil {
				t.Fatalf("pull the restored child %s by digest: %v", lost, err)
			}
			if err := pullIndex(t, reg, "app:v1"); err != nil {
				t.Fatalf("pull app:v1: %v", err)
			}
			desc, err := remote.Get(ref(t, reg, "app@"+lost.String()))
			if err != nil {
				t.Fatal(err)
			}
			if desc.MediaType != tc.f.manifest {
				t.Errorf("restored child's media type %s, want %s", desc.MediaType, tc.f.manifest)
			}
			if top, err := remote.Get(r); err != nil || top.MediaType != tc.f.index || top.Digest.String() != dig(t, ii).String() {
				t.Errorf("app:v1 is %v (%v), want %s %s", top, err, tc.f.index, dig(t, ii))
			}
		})
	}
}

// TestWriteIndexRestoresDeletedLayer: a layer of a child is gone, every
// manifest is still there. The re-push uploads that layer alone: one POST,
// one PUT, no manifest written.
func TestWriteIndexRestoresDeletedLayer(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	amd64, arm64 := image(t, ociFormat, "amd64", 2), image(t, ociFormat, "arm64", 2)
	ii := platformIndex(t, ociFormat, amd64, arm64)
	r := ref(t, reg, "app:v1")
	if err := remote.WriteIndex(r, ii); err != nil {
		t.Fatal(err)
	}
	layers, err := arm64.Layers()
	if err != nil {
		t.Fatal(err)
	}
	lost := dig(t, layers[1])
	imagetest.Delete(t, reg.Base, "app", "blobs", lost)
	if pullIndex(t, reg, "app:v1") == nil {
		t.Fatal("app:v1 pulls with a layer deleted: the test deletes nothing")
	}
	reg.Log.Reset()

	if err := publish.WriteIndex(r, ii); err != nil {
		t.Fatalf("publish.WriteIndex: %v", err)
	}
	if err := pullIndex(t, reg, "app:v1"); err != nil {
		t.Fatalf("pull app:v1 after the re-push: %v", err)
	}
	w := writes(reg.Log.All())
	if len(w) != 2 || !strings.HasPrefix(w[0], "POST /v2/app/blobs/uploads") || !strings.HasPrefix(w[1], "PUT /v2/app/blobs/uploads/") {
		t.Errorf("writes %v, want the lost layer's upload alone (one POST, one PUT)", w)
	}
}

// TestWriteIndexNested: an index of an index. The inner index and one of
// its children are deleted; both come back, the child first.
func TestWriteIndexNested(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	amd64, arm64, s390x := image(t, ociFormat, "amd64", 1), image(t, ociFormat, "arm64", 1), image(t, ociFormat, "s390x", 1)
	inner := platformIndex(t, ociFormat, amd64, arm64)
	outer := platformIndex(t, ociFormat, inner, s390x)
	r := ref(t, reg, "app:v1")
	if err := remote.WriteIndex(r, outer); err != nil {
		t.Fatal(err)
	}
	innerD, childD := dig(t, inner), dig(t, arm64)
	imagetest.Delete(t, reg.Base, "app", "manifests", innerD)
	imagetest.Delete(t, reg.Base, "app", "manifests", childD)
	reg.Log.Reset()

	if err := publish.WriteIndex(r, outer); err != nil {
		t.Fatalf("publish.WriteIndex: %v", err)
	}
	if err := pullIndex(t, reg, "app:v1"); err != nil {
		t.Fatalf("pull app:v1: %v", err)
	}
	w := writes(reg.Log.All())
	i, j := slices.Index(w, "PUT /v2/app/manifests/"+childD.String()), slices.Index(w, "PUT /v2/app/manifests/"+innerD.String())
	if i < 0 || j < 0 || i > j {
		t.Errorf("writes %v: want the child %s put, then the inner index %s", w, childD, innerD)
	}
	if slices.ContainsFunc(w, func(s string) bool { return kindOf(s) == "blobs" }) {
		t.Errorf("writes %v: no blob was lost, none should be uploaded", w)
	}
}

// TestRepushIntactUploadsNothing: re-pushing an index the registry holds
// whole writes nothing. By default (deep) it asks one HEAD per node of the
// closure: the index, its 2 manifests, their 2 configs and 4 layers, and
// one HEAD for the tag: 10. WithDeepCheck(false) asks about the manifests
// only: 3 HEADs, and the tag's: 4.
func TestRepushIntactUploadsNothing(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 2), image(t, ociFormat, "arm64", 2))
	r := ref(t, reg, "app:v1")
	if err := publish.WriteIndex(r, ii); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		deep  bool
		heads int
	}{{true, 10}, {false, 4}} {
		reg.Log.Reset()
		if err := publish.WriteIndex(r, ii, publish.WithDeepCheck(tc.deep)); err != nil {
			t.Fatal(err)
		}
		log := reg.Log.All()
		if w := writes(log); len(w) != 0 {
			t.Errorf("deep %v: the re-push wrote %v, want nothing", tc.deep, w)
		}
		if c := counts(log); c[http.MethodHead] != tc.heads || len(log) != tc.heads {
			t.Errorf("deep %v: %d requests %v, want %d HEADs and nothing else", tc.deep, len(log), c, tc.heads)
		}
		seen := map[string]bool{}
		for _, req := range log {
			if seen[req.Path] {
				t.Errorf("deep %v: %s asked twice", tc.deep, req.Path)
			}
			seen[req.Path] = true
		}
		if !seen["/v2/app/manifests/v1"] {
			t.Errorf("deep %v: the tag was not checked: %v", tc.deep, log)
		}
	}
}

// TestWriteImage: a single image, pushed fresh and tagged (and only
// tagged: no retention tag), then re-pushed after its config was deleted.
func TestWriteImage(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	img := image(t, dockerFormat, "amd64", 2)
	r := ref(t, reg, "solo:latest")
	if err := publish.Write(r, img); err != nil {
		t.Fatalf("publish.Write: %v", err)
	}
	if got := imagetest.TagDigest(t, reg.Base, "solo", "latest"); got != dig(t, img) {
		t.Fatalf("solo:latest names %q, want %s", got, dig(t, img))
	}
	// The publisher's tag keeps the image: no retention tag beside it.
	if tags, err := remote.List(r.Context()); err != nil || !slices.Equal(tags, []string{"latest"}) {
		t.Errorf("tags %v (%v), want only latest", tags, err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	imagetest.Delete(t, reg.Base, "solo", "blobs", dig(t, hash{cfg}))
	if err := publish.Write(r, img); err != nil {
		t.Fatalf("publish.Write again: %v", err)
	}
	if err := pullImage(t, reg, "solo", dig(t, img)); err != nil {
		t.Fatalf("pull solo after the config was restored: %v", err)
	}
}

// TestWriteIndexMovesTag: a publish moves its tag, as remote.WriteIndex
// does; the index the tag named before stays.
func TestWriteIndexMovesTag(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	old := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1))
	next := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1), image(t, ociFormat, "arm64", 1))
	r := ref(t, reg, "app:v1")
	if err := remote.WriteIndex(r, old); err != nil {
		t.Fatal(err)
	}
	if err := publish.WriteIndex(r, next); err != nil {
		t.Fatalf("publish.WriteIndex: %v", err)
	}
	if got := imagetest.TagDigest(t, reg.Base, "app", "v1"); got != dig(t, next) {
		t.Errorf("app:v1 names %s, want the published %s", got, dig(t, next))
	}
	if !imagetest.Has(t, reg.Base, "app", "manifests", dig(t, old).String()) {
		t.Errorf("the index app:v1 named before, %s, is gone: publish never deletes", dig(t, old))
	}
}

// TestWriteIndexByDigest: a digest ref binds no tag of the publisher's;
// the root the registry lacked is kept by regmend's retention tag, so
// the next GC does not take it.
func TestWriteIndexByDigest(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1), image(t, ociFormat, "arm64", 1))
	d := dig(t, ii)
	if err := publish.WriteIndex(ref(t, reg, "app@"+d.String()), ii); err != nil {
		t.Fatalf("publish.WriteIndex: %v", err)
	}
	if err := pullIndex(t, reg, "app@"+d.String()); err != nil {
		t.Fatal(err)
	}
	repo := ref(t, reg, "app:x").Context()
	tags, err := remote.List(repo)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256-" + d.Encoded() + ".regmend"; len(tags) != 1 || tags[0] != want {
		t.Errorf("tags %v, want only the retention tag %s", tags, want)
	}
}
