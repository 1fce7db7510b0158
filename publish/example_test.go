package publish_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmend/regmend/publish"
)

// A registry's GC deleted the arm64 child of a tagged index. Re-pushing
// with remote.WriteIndex finds the index there and stops; publish.WriteIndex
// asks about every child and puts the lost one back.
func Example() {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/app:v1")
	must(err)

	// A random 2-platform index.
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(1024, 2)
		must(err)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	ii := mutate.AppendManifests(empty.Index, adds...)
	must(remote.WriteIndex(ref, ii))

	// GC deletes the arm64 manifest, then its config and layers.
	arm64 := adds[1].Add.(v1.Image)
	d, err := arm64.Digest()
	must(err)
	child := ref.Context().Digest(d.String())
	del(srv.URL + "/v2/app/manifests/" + d.String())
	m, err := arm64.Manifest()
	must(err)
	for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		del(srv.URL + "/v2/app/blobs/" + b.Digest.String())
	}
	fmt.Println("after GC:                ", pullable(child))

	must(remote.WriteIndex(ref, ii))
	fmt.Println("after remote.WriteIndex: ", pullable(child))

	must(publish.WriteIndex(ref, ii)) // the one line that changes
	fmt.Println("after publish.WriteIndex:", pullable(child))
	// Output:
	// after GC:                 arm64 child missing
	// after remote.WriteIndex:  arm64 child missing
	// after publish.WriteIndex: arm64 child pullable
}

func pullable(d name.Digest) string {
	img, err := remote.Image(d)
	if err != nil {
		return "arm64 child missing"
	}
	layers, err := img.Layers()
	must(err)
	for _, l := range layers {
		rc, err := l.Compressed() // verified against its digest as it is read
		must(err)
		_, err = io.Copy(io.Discard, rc)
		must(err)
		must(rc.Close())
	}
	return "arm64 child pullable"
}

func del(url string) {
	req, err := http.NewRequest(http.MethodDelete, url, nil)
	must(err)
	resp, err := http.DefaultClient.Do(req)
	must(err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		log.Fatalf("DELETE %s: %s", url, resp.Status)
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
