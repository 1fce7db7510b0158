package registry_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
)

// TestUploadWritesTheBlob: a blob read from containerd's content store
// reaches go-containerregistry's registry as one POST and one monolithic
// PUT, and the registry then holds it.
func TestUploadWritesTheBlob(t *testing.T) {
	for _, size := range []int{0, 1, 100 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			reg, remote := plainRegistry(t, 1)
			cs, _, desc := localBlob(t, size)
			s := session(t, remote, reg.Host, "app")
			out, err := s.Upload(t.Context(), desc, opener(t.Context(), cs, desc))
			if err != nil || out != registry.Pushed {
				t.Fatalf("upload: %v, %v; want Pushed", out, err)
			}
			if !imagetest.Has(t, reg.Base, "app", "blobs", desc.Digest.String()) {
				t.Fatal("registry lacks the uploaded blob")
			}
			var methods []string
			for _, r := range reg.Log.Writes() {
				methods = append(methods, r.Method)
			}
			if got := strings.Join(methods, " "); got != "POST PUT" {
				t.Errorf("writes %q, want one POST and one monolithic PUT", got)
			}
		})
	}
}

// TestUploadRefusesCorruptContent: local bytes that do not hash to their
// digest never reach the registry whole; the error is data loss, local.
func TestUploadRefusesCorruptContent(t *testing.T) {
	reg, remote := plainRegistry(t, 1)
	cs, root, desc := localBlob(t, 100<<10)
	imagetest.Corrupt(t, root, desc.Digest)
	s := session(t, remote, reg.Host, "app")
	_, err := s.Upload(t.Context(), desc, opener(t.Context(), cs, desc))
	if !errdefs.IsDataLoss(err) || registry.IsRegistrySide(err) {
		t.Fatalf("upload of corrupt content: %v, want local data loss", err)
	}
	if imagetest.Has(t, reg.Base, "app", "blobs", desc.Digest.String()) {
		t.Error("registry holds the blob uploaded from corrupt content")
	}
}

// TestUploadMount: a blob whose source label names another repository of
// the registry is mounted when the registry agrees (201), and uploaded
// otherwise: when it starts an upload (202), refuses the source (401, 403)
// or cannot mount at all (404, 405, 500), as go-containerregistry falls
// back.
func TestUploadMount(t *testing.T) {
	cases := []struct {
		status int
		want   registry.Outcome
	}{
		{http.StatusCreated, registry.Mounted},
		{http.StatusAccepted, registry.Pushed},
		{http.StatusUnauthorized, registry.Pushed},
		{http.StatusForbidden, registry.Pushed},
		{http.StatusNotFound, registry.Pushed},
		{http.StatusMethodNotAllowed, registry.Pushed},
		{http.StatusInternalServerError, registry.Pushed},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			reg, remote := plainRegistry(t, 1)
			var mu sync.Mutex
			var mounts []string
			reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPost || r.URL.Query().Get("mount") == "" {
					return false
				}
				mu.Lock()
				mounts = append(mounts, r.URL.Query().Get("from"))
				mu.Unlock()
				if tc.status == http.StatusAccepted {
					return false // go-containerregistry ignores mount: it starts an upload
				}
				w.WriteHeader(tc.status)
				return true
			})
			cs, _, desc := localBlob(t, 2048)
			desc.Annotations = map[string]string{content.SourceLabelPrefix + content.SourceHost(reg.Host): "lib/base"}
			s := session(t, remote, reg.Host, "lib/app")
			out, err := s.Upload(t.Context(), desc, opener(t.Context(), cs, desc))
			if err != nil || out != tc.want {
				t.Fatalf("mount answered %d: %v, %v; want %v", tc.status, out, err, tc.want)
			}
			mu.Lock()
			if len(mounts) != 1 || mounts[0] != "lib/base" {
				t.Errorf("mount requests from %v, want one from lib/base", mounts)
			}
			mu.Unlock()
			if tc.want == registry.Pushed && !imagetest.Has(t, reg.Base, "lib/app", "blobs", desc.Digest.String()) {
				t.Error("registry lacks the blob after the fallback upload")
			}
		})
	}
}

// TestManifestPut: a manifest from containerd's store is put by digest and
// then held; corrupt local bytes are refused before anything is sent.
func TestManifestPut(t *testing.T) {
	reg, remote := plainRegistry(t, 1)
	cs, root := imagetest.LocalStore(t)
	m := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 64)
	imagetest.WriteLocal(t, cs, reg.Host, "app", m)
	for _, b := range append(m.Layers, *m.Config) {
		imagetest.PushBlob(t, reg.Base, "app", b)
	}
	s := session(t, remote, reg.Host, "app")
	if err := s.PutManifest(t.Context(), m.Desc.Digest.String(), m.Desc, opener(t.Context(), cs, m.Desc)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(t.Context(), m.Desc, true); !ok || err != nil {
		t.Fatalf("manifest not held after its PUT: %v, %v", ok, err)
	}
	imagetest.Corrupt(t, root, m.Desc.Digest)
	reg.Log.Reset()
	err := s.PutManifest(t.Context(), "v2", m.Desc, opener(t.Context(), cs, m.Desc))
	if !errdefs.IsDataLoss(err) {
		t.Errorf("put of a corrupt manifest: %v, want data loss", err)
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("a corrupt manifest reached the registry: %v", w)
	}
}
