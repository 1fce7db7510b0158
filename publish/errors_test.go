package publish_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/publish"
	"github.com/regmend/regmend/resolver/heal"
)

// TestBadInput: what a caller got wrong is an invalid-argument error that
// names it, before any request.
func TestBadInput(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1))
	r := ref(t, reg, "app:v1")
	other, err := name.NewDigest(reg.Host + "/app@sha256:" + strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"nil index", "nil image index", publish.WriteIndex(r, nil)},
		{"nil image", "nil image", publish.Write(r, nil)},
		{"nil reference", "nil reference", publish.WriteIndex(nil, ii)},
		{"digest of other content", "the content's digest is", publish.WriteIndex(other, ii)},
		{"jobs 0", "jobs 0", publish.WriteIndex(r, ii, publish.WithJobs(0))},
		{"nil transport", "transport: nil", publish.WriteIndex(r, ii, publish.WithTransport(nil))},
		{"nil option", "option: nil", publish.WriteIndex(r, ii, nil)},
	} {
		if !errdefs.IsInvalidArgument(tc.err) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want an invalid-argument error saying %q", tc.name, tc.err, tc.want)
		}
	}
	sbom, err := random.Layer(100, "application/vnd.example.sbom")
	if err != nil {
		t.Fatal(err)
	}
	withBlob := mutate.AppendManifests(ii, mutate.IndexAddendum{Add: sbom})
	if err := publish.WriteIndex(r, withBlob); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), dig(t, sbom).String()) {
		t.Errorf("an index naming a blob: %v, want not implemented, naming the blob (the engine would leave it out)", err)
	}
	if err := publish.WriteIndex(r, mutate.IndexMediaType(ii, types.OCIManifestSchema1)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("an index whose media type is a manifest's: %v, want invalid argument", err)
	}
	if got := reg.Log.All(); len(got) != 0 {
		t.Errorf("bad input sent %v", got)
	}
}

// TestRegistryRefuses: a registry that refuses the push fails it with an
// error of the refusal's class naming the repository, at once: a
// refusal is not retried.
func TestRegistryRefuses(t *testing.T) {
	for _, tc := range []struct {
		code int
		is   func(error) bool
	}{{http.StatusForbidden, errdefs.IsPermissionDenied}, {http.StatusUnauthorized, errdefs.IsUnauthorized}} {
		reg := imagetest.NewRegistry(t)
		reg.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(tc.code)
			return true
		})
		err := publish.WriteIndex(ref(t, reg, "app:v1"), platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1)))
		if !tc.is(err) || !strings.Contains(err.Error(), reg.Host+"/app") {
			t.Errorf("registry answering %d: %v, want its class, naming %s/app", tc.code, err, reg.Host)
		}
		// The index and its one manifest are asked at once; nothing after.
		if log := reg.Log.All(); len(log) > 2 || len(writes(log)) != 0 {
			t.Errorf("registry answering %d: %v, want the push to stop at the refusal of its first HEADs", tc.code, log)
		}
	}
}

// lyingLayer is a layer whose bytes are not the ones its digest names.
type lyingLayer struct {
	v1.Layer
	data []byte
}

func (l lyingLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}

// TestLayerNotMatchingDigest: a layer whose bytes do not hash to its
// digest (or end early) fails the push as data loss, and the registry
// never gets that blob, nor the manifest or tag over it.
func TestLayerNotMatchingDigest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"other bytes", func(b []byte) []byte { c := bytes.Clone(b); c[len(c)/2] ^= 0xff; return c }},
		{"short", func(b []byte) []byte { return b[:len(b)-1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := imagetest.NewRegistry(t)
			good, err := random.Layer(4096, types.DockerLayer)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := good.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			img, err := mutate.AppendLayers(image(t, ociFormat, "amd64", 1), lyingLayer{Layer: good, data: tc.mangle(b)})
			if err != nil {
				t.Fatal(err)
			}
			err = publish.Write(ref(t, reg, "app:v1"), img)
			if !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), dig(t, good).String()) {
				t.Fatalf("publish.Write: %v, want a data-loss error naming the layer %s", err, dig(t, good))
			}
			if imagetest.Has(t, reg.Base, "app", "blobs", dig(t, good).String()) {
				t.Error("the registry holds the layer that does not match its digest")
			}
			if imagetest.Has(t, reg.Base, "app", "manifests", dig(t, img).String()) || imagetest.TagDigest(t, reg.Base, "app", "v1") != "" {
				t.Error("the manifest over the bad layer was written")
			}
		})
	}
}

// TestRegistryUnreachable: a registry that refuses connections fails the
// push (after the engine's retries) with an error naming its address.
func TestRegistryUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r, err := name.ParseReference(addr + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	err = publish.WriteIndex(r, platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1)))
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("publish to a closed port: %v, want an error naming %s and the refused connection", err, addr)
	}
}

// TestTagRefusedKeepsRoot: when the registry refuses the tag after the
// root it lacked was pushed, the root's retention tag keeps it from the
// next GC, and the error says so.
func TestTagRefusedKeepsRoot(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.URL.Path == "/v2/app/manifests/v1" {
			w.WriteHeader(http.StatusForbidden)
			return true
		}
		return false
	})
	ii := platformIndex(t, ociFormat, image(t, ociFormat, "amd64", 1))
	root := dig(t, ii)
	err := publish.WriteIndex(ref(t, reg, "app:v1"), ii)
	retention := heal.RetentionTag(root)
	if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), retention) {
		t.Fatalf("publish with the tag refused: %v, want permission denied naming retention tag %s", err, retention)
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", retention); d != root {
		t.Errorf("retention tag %s = %q, want the pushed root %s", retention, d, root)
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", "v1"); d != "" {
		t.Errorf("tag v1 = %s through a refused PUT", d)
	}
}
