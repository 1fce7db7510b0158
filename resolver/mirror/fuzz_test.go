package mirror

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

// FuzzParseMirrorRequest: any path and query either parse into a valid
// repository, registry and digest of a manifests or blobs request, or are
// refused with 400 or 404 and an OCI error code.
func FuzzParseMirrorRequest(f *testing.F) {
	d := digest.FromString("x").String()
	for _, s := range []string{
		"/v2/app/manifests/" + d, "/v2/team/app/blobs/" + d, "/v2/app/manifests/v1", "/v2/../../etc/manifests/" + d,
		"/v2/app/blobs/sha256:xyz", "/v2/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", "/v2//manifests/" + d,
		"/v2/a%2Fb/manifests/" + d, "/v2/a/b/c/d/e/blobs/" + d, "/v2/", "/v3/x/manifests/" + d, "/v2/app/tags/list",
		"/v2/app/manifests/sha256:" + strings.Repeat("A", 64), "/v2/app/manifests/sha512:" + strings.Repeat("0", 128),
		"/v2/App/manifests/" + d, "/v2/app\x00/manifests/" + d, "/v2/app/manifests/" + d + "/",
	} {
		for _, q := range []string{"ns=edge:5000", "", "ns=a/b", "ns=edge:5000&ns=other", "ns=%zz", "ns=[::1]:5000", "ns=" + strings.Repeat("a", 300)} {
			f.Add(s, q)
		}
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: query}}
		req, status, code, msg := parseMirrorRequest(r)
		if status == 0 {
			if err := imageref.ValidateRepository(req.repo); err != nil {
				t.Errorf("accepted invalid repository %q", req.repo)
			}
			if err := req.digest.Validate(); err != nil {
				t.Errorf("accepted invalid digest %q", req.digest)
			}
			if req.kind != "manifests" && req.kind != "blobs" {
				t.Errorf("accepted kind %q", req.kind)
			}
			if req.registry != "" && imageref.ValidateRegistry(req.registry) != nil {
				t.Errorf("accepted invalid ns %q", req.registry)
			}
			if strings.Contains(req.repo, "..") {
				t.Errorf("accepted a repository with '..': %q", req.repo)
			}
			return
		}
		if status != http.StatusBadRequest && status != http.StatusNotFound {
			t.Errorf("refused with %d, want 400 or 404", status)
		}
		if code == "" || msg == "" {
			t.Errorf("refusal %d without an OCI error code and message", status)
		}
	})
}

// mirrorForFuzz is a mirror over a real local store holding one image
// pulled from edge:5000/app, an unreadable manifest and a manifest over
// MaxManifestSize, with a heal queue that is never run.
func mirrorForFuzz(f *testing.F) (*Mirror, map[string][]byte) {
	cs, _ := imagetest.LocalStore(f)
	m := imagetest.Manifest(f, imagetest.OCI, healtest.AMD64, 2, 2048)
	idx := imagetest.Index(f, imagetest.Docker, m)
	imagetest.WriteLocal(f, cs, "edge:5000", "app", idx)
	bad := &imagetest.Object{Blob: imagetest.NewBlob("application/vnd.oci.image.manifest.v1+json", []byte(`{"config": not json`))}
	imagetest.WriteLocal(f, cs, "edge:5000", "app", bad)
	huge := &imagetest.Object{Blob: imagetest.NewBlob("application/vnd.oci.image.index.v1+json", hugeIndex())}
	imagetest.WriteLocal(f, cs, "edge:5000", "app", huge)
	remote, err := registry.NewRemote(registry.WithHostsDir(f.TempDir()), registry.WithRegistries("edge:5000"))
	if err != nil {
		f.Fatal(err)
	}
	q, err := heal.NewQueue(nil, nil, heal.WithQueueSize(4))
	if err != nil {
		f.Fatal(err)
	}
	known := map[string][]byte{}
	for _, b := range append(idx.Blobs(), bad.Blob, huge.Blob) {
		known[b.Desc.Digest.String()] = b.Data
	}
	return New(cs, remote, WithHealQueue(q), WithMetrics(NewMetrics(nil))), known
}

// hugeIndex is a well-formed index just over MaxManifestSize.
func hugeIndex() []byte {
	var b strings.Builder
	b.WriteString(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`)
	entry := `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digest.FromString("x").String() + `","size":1},`
	for b.Len() < 4<<20 {
		b.WriteString(entry)
	}
	b.WriteString(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digest.FromString("y").String() + `","size":1}]}`)
	return []byte(b.String())
}

// FuzzMirror sends arbitrary requests to the whole Mirror.ServeHTTP over a
// real content store: it never panics and never answers 5xx (containerd
// ranks a 5xx above a 404 and would turn every miss into a failed pull);
// what it serves is exactly the local content of the digest asked for, and
// each refusal is an OCI error document.
func FuzzMirror(f *testing.F) {
	mirror, known := mirrorForFuzz(f)
	for d := range known {
		for _, kind := range []string{"manifests", "blobs"} {
			f.Add("GET", "/v2/app/"+kind+"/"+d, "ns=edge:5000", "")
			f.Add("HEAD", "/v2/app/"+kind+"/"+d, "ns=edge:5000", "bytes=0-9")
		}
	}
	for _, s := range []struct{ method, path, query, rng string }{
		{"GET", "/v2/", "", ""},
		{"GET", "/v2", "ns=edge:5000", ""},
		{"PUT", "/v2/app/manifests/latest", "ns=edge:5000", ""},
		{"GET", "/v2/app/manifests/latest", "ns=edge:5000", ""},
		{"GET", "/v2/../../etc/passwd/blobs/sha256:" + strings.Repeat("0", 64), "ns=edge:5000", ""},
		{"GET", "/v2/app/blobs/sha256:" + strings.Repeat("0", 64), "ns=other:5000", ""},
		{"GET", "/v2/app/blobs/sha256:" + strings.Repeat("0", 64), "ns=edge:5000", "bytes=99999999-"},
		{"GET", "/v2/app/blobs/sha256:" + strings.Repeat("0", 64), "ns=edge:5000", "bytes=-1,0-0,5-2"},
		{"OPTIONS", "*", "", ""},
		{"GET", "", "", ""},
		{"", "/v2/app/blobs/x", "", ""},
	} {
		f.Add(s.method, s.path, s.query, s.rng)
	}
	f.Fuzz(func(t *testing.T, method, path, query, rng string) {
		r := (&http.Request{
			Method: method, URL: &url.URL{Path: path, RawQuery: query},
			Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "127.0.0.1:5050",
			RequestURI: path,
		}).WithContext(context.Background())
		if rng != "" {
			r.Header.Set("Range", rng)
		}
		w := httptest.NewRecorder()
		mirror.ServeHTTP(w, r)
		resp := w.Result()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s?%s (Range %q) answered %d", method, path, query, rng, resp.StatusCode)
		}
		body := w.Body.Bytes()
		switch {
		case resp.StatusCode == http.StatusOK && path != "/v2/" && path != "/v2":
			d := resp.Header.Get("Docker-Content-Digest")
			want, ok := known[d]
			if !ok || !strings.HasSuffix(path, "/"+d) {
				t.Fatalf("served %s for %s", d, path)
			}
			if method == http.MethodGet && string(body) != string(want) {
				t.Fatalf("GET %s served bytes that are not the content", path)
			}
		case resp.StatusCode == http.StatusPartialContent:
			if method != http.MethodGet && method != http.MethodHead {
				t.Fatalf("%s answered 206", method)
			}
		case resp.StatusCode >= 400 && resp.StatusCode != http.StatusRequestedRangeNotSatisfiable && method != http.MethodHead:
			var doc struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			if err := json.Unmarshal(body, &doc); err != nil || len(doc.Errors) != 1 || doc.Errors[0].Code == "" {
				t.Fatalf("%d without an OCI error document: %q", resp.StatusCode, body)
			}
			if !utf8.Valid(body) {
				t.Fatalf("error document is not UTF-8")
			}
		}
	})
}
