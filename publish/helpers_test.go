package publish_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
)

// format is a family of media types: OCI, or Docker schema 2.
type format struct {
	index, manifest, config types.MediaType
}

var (
	ociFormat    = format{types.OCIImageIndex, types.OCIManifestSchema1, types.OCIConfigJSON}
	dockerFormat = format{types.DockerManifestList, types.DockerManifestSchema2, types.DockerConfigJSON}
)

// image is a random linux/arch image of f with layers layers of 1 KiB.
func image(t *testing.T, f format, arch string, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(1024, layers)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, f.manifest), f.config)
}

// platformIndex is an index of f over children, each image named with the
// platform of its config.
func platformIndex(t *testing.T, f format, children ...mutate.Appendable) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, c := range children {
		add := mutate.IndexAddendum{Add: c}
		if img, ok := c.(v1.Image); ok {
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			add.Descriptor.Platform = cfg.Platform()
		}
		adds = append(adds, add)
	}
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), f.index)
}

func ref(t *testing.T, reg *imagetest.Registry, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(reg.Host + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func dig(t *testing.T, d interface{ Digest() (v1.Hash, error) }) digest.Digest {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

// children returns the descriptors ii names.
func children(t *testing.T, ii v1.ImageIndex) []v1.Descriptor {
	t.Helper()
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return im.Manifests
}

// pullIndex pulls repo's tag or digest as a fresh node would and reads
// every manifest, config and layer under it, checking each digest.
func pullIndex(t *testing.T, reg *imagetest.Registry, at string) error {
	t.Helper()
	ii, err := remote.Index(ref(t, reg, at))
	if err != nil {
		return err
	}
	return validate.Index(ii)
}

// pullImage pulls an image by digest and reads all of it.
func pullImage(t *testing.T, reg *imagetest.Registry, repo string, d digest.Digest) error {
	t.Helper()
	img, err := remote.Image(ref(t, reg, repo+"@"+d.String()))
	if err != nil {
		return err
	}
	return validate.Image(img)
}

// writes returns the requests of log that change the registry (POST, PUT,
// PATCH, DELETE).
func writes(log []imagetest.Request) []string {
	var out []string
	for _, r := range log {
		if r.Method != http.MethodHead && r.Method != http.MethodGet {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

// counts returns how many requests of log had each method.
func counts(log []imagetest.Request) map[string]int {
	out := map[string]int{}
	for _, r := range log {
		out[r.Method]++
	}
	return out
}

func kindOf(path string) string {
	switch {
	case strings.Contains(path, "/manifests/"):
		return "manifests"
	case strings.Contains(path, "/blobs/"):
		return "blobs"
	}
	return path
}

// hash lends a v1.Hash the Digest method dig reads.
type hash struct{ h v1.Hash }

func (h hash) Digest() (v1.Hash, error) { return h.h, nil }

// collect deletes img from repo as a registry's garbage collection does once
// nothing references it: its manifest, then its config and layers.
func collect(t *testing.T, reg *imagetest.Registry, repo string, img v1.Image) {
	t.Helper()
	imagetest.Delete(t, reg.Base, repo, "manifests", dig(t, img))
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		imagetest.Delete(t, reg.Base, repo, "blobs", digest.Digest(d.Digest.String()))
	}
}
