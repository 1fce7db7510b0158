package registry_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
)

// zotLike makes go-containerregistry's registry bind ?tag= on a manifest
// PUT by digest as zot does since v2.1.16 (the manifest stored by digest
// and under each tag, one OCI-Tag header per tag), and records each such
// request.
func zotLike(t *testing.T, reg *imagetest.Registry) func() []string {
	var mu sync.Mutex
	var seen []string
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		tags := r.URL.Query()["tag"]
		if r.Method != http.MethodPut || len(tags) == 0 {
			return false
		}
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		base := strings.TrimSuffix(reg.Base, "/") + r.URL.Path[:strings.LastIndex(r.URL.Path, "/")+1]
		for _, ref := range append([]string{r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]}, tags...) {
			req, _ := http.NewRequest(http.MethodPut, base+ref, bytes.NewReader(body))
			req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusCreated {
				t.Errorf("store %s: %v %v", ref, err, resp)
				w.WriteHeader(http.StatusInternalServerError)
				return true
			}
			resp.Body.Close()
		}
		for _, tag := range tags {
			w.Header().Add("OCI-Tag", tag)
		}
		w.WriteHeader(http.StatusCreated)
		return true
	})
	return func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

// TestPutManifestTaggedBindsInOneRequest: against a registry that binds
// ?tag= (zot), the manifest and its retention tag arrive in one PUT by
// digest, and the tag then names the digest.
func TestPutManifestTaggedBindsInOneRequest(t *testing.T) {
	reg, remote := plainRegistry(t, 1)
	seen := zotLike(t, reg)
	cs, _ := imagetest.LocalStore(t)
	m := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 64)
	imagetest.WriteLocal(t, cs, reg.Host, "app", m)
	for _, b := range append(m.Layers, *m.Config) {
		imagetest.PushBlob(t, reg.Base, "app", b)
	}
	s := session(t, remote, reg.Host, "app")
	const tag = "sha256-abc.regmend"
	bound, err := s.PutManifestTagged(t.Context(), m.Desc, tag, opener(t.Context(), cs, m.Desc))
	if err != nil || !bound {
		t.Fatalf("PutManifestTagged: bound=%v, %v; want bound", bound, err)
	}
	want := "PUT /v2/app/manifests/" + m.Desc.Digest.String() + "?tag=" + tag
	if got := seen(); len(got) != 1 || got[0] != want {
		t.Errorf("requests %v, want one %s", got, want)
	}
	if d, ok, err := s.TagDigest(t.Context(), tag); !ok || err != nil || d != m.Desc.Digest {
		t.Errorf("tag %s names %s (%v, %v), want %s", tag, d, ok, err, m.Desc.Digest)
	}
	if bound, err := s.PutManifestTagged(t.Context(), m.Desc, tag, opener(t.Context(), cs, m.Desc)); !bound || err != nil || len(seen()) != 1 {
		t.Errorf("again: bound=%v, %v, %d tagged PUTs; want bound with nothing written", bound, err, len(seen()))
	}
}

// TestPutManifestTaggedIgnored: a registry that ignores ?tag=
// (distribution, go-containerregistry's) stores the manifest by digest
// only, and PutManifestTagged says the tag is not bound.
func TestPutManifestTaggedIgnored(t *testing.T) {
	reg, remote := plainRegistry(t, 1)
	cs, _ := imagetest.LocalStore(t)
	m := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 64)
	imagetest.WriteLocal(t, cs, reg.Host, "app", m)
	for _, b := range append(m.Layers, *m.Config) {
		imagetest.PushBlob(t, reg.Base, "app", b)
	}
	s := session(t, remote, reg.Host, "app")
	bound, err := s.PutManifestTagged(t.Context(), m.Desc, "keep", opener(t.Context(), cs, m.Desc))
	if err != nil || bound {
		t.Fatalf("PutManifestTagged: bound=%v, %v; want stored, not bound", bound, err)
	}
	if ok, err := s.Exists(t.Context(), m.Desc, true); !ok || err != nil {
		t.Errorf("manifest not stored by digest: %v, %v", ok, err)
	}
	if _, ok, _ := s.TagDigest(t.Context(), "keep"); ok {
		t.Error("a registry that ignores ?tag= holds the tag")
	}
}

// TestPutManifestTaggedNeverMovesATag: a tag that names another digest is
// refused before anything is written; so is a name that is not a tag.
func TestPutManifestTaggedNeverMovesATag(t *testing.T) {
	reg, remote := plainRegistry(t, 1)
	seen := zotLike(t, reg)
	cs, _ := imagetest.LocalStore(t)
	m := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 64)
	other := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "arm64"), 1, 64)
	imagetest.WriteLocal(t, cs, reg.Host, "app", m)
	imagetest.Push(t, reg.Base, "app", "taken", other)
	s := session(t, remote, reg.Host, "app")
	reg.Log.Reset()
	_, err := s.PutManifestTagged(t.Context(), m.Desc, "taken", opener(t.Context(), cs, m.Desc))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("err = %v, want already exists", err)
	}
	if w := reg.Log.Writes(); len(w) != 0 || len(seen()) != 0 {
		t.Errorf("writes %v %v, want none", w, seen())
	}
	if d, _, _ := s.TagDigest(t.Context(), "taken"); d != other.Desc.Digest {
		t.Errorf("tag moved to %s", d)
	}
	for _, bad := range []string{"", "-x", "a/b", strings.Repeat("x", 129)} {
		if _, err := s.PutManifestTagged(t.Context(), m.Desc, bad, opener(t.Context(), cs, m.Desc)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("tag %q: %v, want invalid argument", bad, err)
		}
	}
}
