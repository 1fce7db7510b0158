package imagetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func isExists(err error) bool { return errdefs.IsAlreadyExists(err) }

// Push uploads o to base (e.g. "http://127.0.0.1:5000") as repo, leaves
// first, binding tag to the root when tag is not empty.
func Push(t testing.TB, base, repo, tag string, o *Object) {
	t.Helper()
	for _, c := range o.Children {
		Push(t, base, repo, "", c)
	}
	leaves := append([]Blob{}, o.Layers...)
	if o.Config != nil {
		leaves = append(leaves, *o.Config)
	}
	for _, b := range leaves {
		PushBlob(t, base, repo, b)
	}
	ref := o.Desc.Digest.String()
	if tag != "" {
		ref = tag
	}
	PutManifest(t, base, repo, ref, o.Blob)
}

// PushBlob uploads one blob in a single PUT.
func PushBlob(t testing.TB, base, repo string, b Blob) {
	t.Helper()
	resp := do(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload of %s: %s", b.Desc.Digest, resp.Status)
	}
	if strings.HasPrefix(loc, "/") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp = do(t, http.MethodPut, loc+sep+"digest="+b.Desc.Digest.String(), "application/octet-stream", b.Data)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %s", b.Desc.Digest, resp.Status)
	}
}

// PutManifest puts a manifest or index at ref (a tag or its digest).
func PutManifest(t testing.TB, base, repo, ref string, b Blob) {
	t.Helper()
	resp := do(t, http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, b.Desc.MediaType, b.Data)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest %s as %s: %s", b.Desc.Digest, ref, resp.Status)
	}
}

// Delete removes a manifest (kind "manifests") or blob ("blobs") by digest.
func Delete(t testing.TB, base, repo, kind string, d digest.Digest) {
	t.Helper()
	resp := do(t, http.MethodDelete, base+"/v2/"+repo+"/"+kind+"/"+d.String(), "", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete %s %s: %s", kind, d, resp.Status)
	}
}

// Has reports whether the registry holds a manifest or blob.
func Has(t testing.TB, base, repo, kind, ref string) bool {
	t.Helper()
	resp := do(t, http.MethodHead, base+"/v2/"+repo+"/"+kind+"/"+ref, "", nil)
	return resp.StatusCode == http.StatusOK
}

// TagDigest returns the digest tag points at, or "" when it does not exist.
func TagDigest(t testing.TB, base, repo, tag string) digest.Digest {
	t.Helper()
	resp := do(t, http.MethodHead, base+"/v2/"+repo+"/manifests/"+tag, "", nil)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return digest.Digest(resp.Header.Get("Docker-Content-Digest"))
}

// Get returns the body of a manifest or blob.
func Get(t testing.TB, base, repo, kind, ref string) ([]byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/"+kind+"/"+ref, nil)
	req.Header.Set("Accept", "*/*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func do(t testing.TB, method, url, ctype string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(fmt.Errorf("%s %s: %w", method, url, err))
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
