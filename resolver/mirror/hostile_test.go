package mirror

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// TestMirrorServesOnlyTheRepositoryContentCameFrom: content pulled from
// edge/secret is not served, nor healed, for a request naming edge/public.
// Otherwise anyone who can name a digest could pull an image through
// regmend from a repository the registry would refuse them, and the heal
// would copy it into that repository.
func TestMirrorServesOnlyTheRepositoryContentCameFrom(t *testing.T) {
	f, q, srv, _ := mirrorFixture(t)
	secret := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	imagetest.WriteLocal(t, f.CS, f.Host, "secret", secret)
	ns := "?ns=" + f.Host
	for _, b := range []imagetest.Blob{secret.Blob, secret.Layers[0], *secret.Config} {
		kind := "blobs"
		if b.Desc.Digest == secret.Desc.Digest {
			kind = "manifests"
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, body := get(t, method, srv.URL+"/v2/public/"+kind+"/"+b.Desc.Digest.String()+ns)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s public/%s/%s = %d, want 404 (pulled from secret only)", method, kind, b.Desc.Digest, resp.StatusCode)
			}
			if method == http.MethodGet && bytes.Contains(body, b.Data) {
				t.Errorf("content of secret served under public")
			}
		}
	}
	if resp, _ := get(t, http.MethodGet, srv.URL+"/v2/secret/manifests/"+secret.Desc.Digest.String()+ns); resp.StatusCode != 200 {
		t.Errorf("the repository it came from: %d, want 200", resp.StatusCode)
	}
	imagetest.WaitUntil(t, 10*time.Second, "heal of secret done", func() bool { return q.Len() == 0 })
	for _, r := range f.Log.All() {
		if strings.HasPrefix(r.Path, "/v2/public/") {
			t.Errorf("request to the registry for public: %v", r)
		}
	}
}

// unreadable writes local documents no heal may push and no mirror may
// serve, each pulled from edge/app.
func unreadable(t *testing.T, f *healtest.Fixture) map[string]*imagetest.Object {
	t.Helper()
	docs := map[string]*imagetest.Object{}
	docs["malformed json"] = &imagetest.Object{Blob: imagetest.NewBlob("application/vnd.oci.image.manifest.v1+json", []byte(`{"schemaVersion":2,"config":{"digest":`))}
	docs["over MaxManifestSize"] = &imagetest.Object{Blob: imagetest.NewBlob("application/vnd.oci.image.index.v1+json", hugeIndex())}
	docs["schema 1"] = &imagetest.Object{Blob: imagetest.NewBlob("application/vnd.oci.image.manifest.v1+json", []byte(`{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:`+strings.Repeat("0", 64)+`"}]}`))}
	docs["layer claiming to be a manifest"] = &imagetest.Object{Blob: imagetest.NewBlob("application/vnd.oci.image.manifest.v1+json", []byte("\x1f\x8b\x08\x00 not json at all"))}
	deep := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 16)
	for range content.MaxDepth + 4 {
		deep = imagetest.Index(t, imagetest.OCI, deep)
	}
	docs["nested past MaxDepth"] = deep
	var b strings.Builder
	b.WriteString(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`)
	for i := range content.MaxNodes + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%064x","size":100}`, i)
	}
	b.WriteString(`]}`)
	docs["wider than MaxNodes"] = &imagetest.Object{Blob: imagetest.NewBlob("application/vnd.oci.image.index.v1+json", []byte(b.String()))}
	for _, o := range docs {
		imagetest.WriteLocal(t, f.CS, f.Host, "app", o)
	}
	return docs
}

// TestHostileLocalDocuments: malformed, oversized, schema 1, binary,
// too deep and too wide documents in the local store are never pushed,
// and the mirror answers 404 for them (never 5xx): a node's bad content
// cannot break a pull or reach the registry.
func TestHostileLocalDocuments(t *testing.T) {
	f, _, srv, _ := mirrorFixture(t)
	docs := unreadable(t, f)
	for name, o := range docs {
		t.Run(name, func(t *testing.T) {
			f.Log.Reset()
			resp, _ := get(t, http.MethodGet, srv.URL+"/v2/app/manifests/"+o.Desc.Digest.String()+"?ns="+f.Host)
			if name == "nested past MaxDepth" || name == "wider than MaxNodes" {
				// The document itself is well-formed: serving it is right;
				// only the heal must stop at the limit.
				if resp.StatusCode != 200 {
					t.Errorf("mirror answered %d for a well-formed index", resp.StatusCode)
				}
			} else if resp.StatusCode != http.StatusNotFound {
				t.Errorf("mirror answered %d, want 404", resp.StatusCode)
			}
			res, err := f.Heal(t, "app", o)
			switch {
			case err == nil:
				t.Fatalf("heal of %s succeeded: %+v", name, res)
			case errdefs.IsNotFound(err) && res != nil:
				if res.Nodes[len(res.Nodes)-1].Status != heal.StatusUnhealable || res.Nodes[len(res.Nodes)-1].Reason == "" {
					t.Errorf("root %+v, want unhealable with a reason", res.Nodes[len(res.Nodes)-1])
				}
			case errdefs.IsInvalidArgument(err):
			default:
				t.Errorf("heal err = %v, want a partial heal or invalid argument", err)
			}
			if w := f.Log.Writes(); len(w) != 0 {
				t.Errorf("heal wrote to the registry: %v", w)
			}
			if f.Has(t, "app", "manifests", o.Blob) {
				t.Error("the registry holds the hostile document")
			}
		})
	}
}
