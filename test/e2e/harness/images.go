package harness

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
)

// HostPlatform is "linux/<GOARCH>", the platform CRI pulls on this machine.
var HostPlatform = "linux/" + runtime.GOARCH

// ImageSpec describes a random single-arch image for PushImage. The zero value
// is a one-layer 1 KiB OCI image for HostPlatform.
type ImageSpec struct {
	// Platform is "os/arch[/variant]"; default HostPlatform. It is written to
	// the image config (os, architecture, variant).
	Platform string
	// Layers is the number of random gzip tar layers; default 1.
	Layers int
	// LayerSize is the size of the one random file in each layer; default 1024.
	LayerSize int64
	// Docker selects Docker schema 2 media types instead of OCI.
	Docker bool
}

// PushedImage is a single-arch image that was pushed.
type PushedImage struct {
	Ref       string        // the reference pushed to (tag or digest form)
	Digest    digest.Digest // manifest digest
	MediaType string        // manifest media type
	Size      int64         // manifest size
	Platform  v1.Platform   // from ImageSpec.Platform
	Config    digest.Digest
	Layers    []digest.Digest
	Image     v1.Image
}

// Blobs returns the config and layer digests.
func (p PushedImage) Blobs() []digest.Digest {
	return append([]digest.Digest{p.Config}, p.Layers...)
}

// IndexSpec describes a multi-arch index for PushIndex.
type IndexSpec struct {
	// Platforms gets one fresh random image each (ImageSpec with Layers,
	// LayerSize and Docker below), in order.
	Platforms []string
	// Existing are already-pushed images added as further entries, with their
	// Platform, after the fresh ones (they are pushed again by digest, which
	// is a no-op when present).
	Existing []PushedImage
	// Layers, LayerSize and Docker apply to the fresh images and to the index
	// media type (Docker manifest list instead of OCI index).
	Layers    int
	LayerSize int64
	Docker    bool
}

// PushedIndex is a multi-arch index that was pushed, with its children.
type PushedIndex struct {
	Ref       string
	Digest    digest.Digest
	MediaType string
	Size      int64
	Children  []PushedImage // in index order
	Index     v1.ImageIndex
}

// Child returns the child for platform ("os/arch[/variant]"); it fails the
// test if there is none.
func (p PushedIndex) Child(t testing.TB, platform string) PushedImage {
	t.Helper()
	want := ParsePlatform(t, platform)
	for _, c := range p.Children {
		if c.Platform.OS == want.OS && c.Platform.Architecture == want.Architecture && c.Platform.Variant == want.Variant {
			return c
		}
	}
	t.Fatalf("index %s has no child for %s", p.Ref, platform)
	return PushedImage{}
}

// ParsePlatform parses "os/arch[/variant]".
func ParsePlatform(t testing.TB, s string) v1.Platform {
	t.Helper()
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		t.Fatalf("bad platform %q (want os/arch[/variant])", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p
}

// NewImage builds (without pushing) a random single-arch image: a config
// with os/architecture set and spec.Layers random gzip tar layers.
func NewImage(t testing.TB, spec ImageSpec) v1.Image {
	t.Helper()
	if spec.Platform == "" {
		spec.Platform = HostPlatform
	}
	if spec.Layers <= 0 {
		spec.Layers = 1
	}
	if spec.LayerSize <= 0 {
		spec.LayerSize = 1024
	}
	plat := ParsePlatform(t, spec.Platform)
	manifestType, configType, layerType := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	if spec.Docker {
		manifestType, configType, layerType = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, manifestType), configType)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: plat.Architecture,
		OS:           plat.OS,
		Variant:      plat.Variant,
		Created:      v1.Time{Time: time.Now().UTC().Truncate(time.Second)},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/true"},
		},
	})
	if err != nil {
		t.Fatalf("image config: %v", err)
	}
	adds := make([]mutate.Addendum, 0, spec.Layers)
	for i := 0; i < spec.Layers; i++ {
		l, err := random.Layer(spec.LayerSize, layerType)
		if err != nil {
			t.Fatalf("random layer: %v", err)
		}
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: layerType,
			History:   v1.History{CreatedBy: fmt.Sprintf("regmend e2e layer %d", i)},
		})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		t.Fatalf("append layers: %v", err)
	}
	return img
}

// PushImage builds a random single-arch image (NewImage) and pushes it to ref
// ("127.0.0.1:PORT/repo:tag" or "...@sha256:..."), blobs first.
func PushImage(ctx context.Context, t testing.TB, ref string, spec ImageSpec) PushedImage {
	t.Helper()
	if spec.Platform == "" {
		spec.Platform = HostPlatform
	}
	img := NewImage(t, spec)
	return WriteImage(ctx, t, ref, img, ParsePlatform(t, spec.Platform))
}

// WriteImage pushes img to ref and describes it; platform is recorded in the
// result (pass the platform of its config).
func WriteImage(ctx context.Context, t testing.TB, ref string, img v1.Image, platform v1.Platform) PushedImage {
	t.Helper()
	r := parseRef(t, ref)
	if err := remote.Write(r, img, remoteOptions(ctx)...); err != nil {
		t.Fatalf("push image %s: %v", ref, err)
	}
	return describeImage(t, ref, img, platform)
}

// PushIndex pushes a multi-arch index to ref: each child manifest (with its
// blobs) is pushed by digest first, then the index, whose entries carry
// `platform` so CRI can pick a child.
func PushIndex(ctx context.Context, t testing.TB, ref string, spec IndexSpec) PushedIndex {
	t.Helper()
	r := parseRef(t, ref)
	indexType := types.OCIImageIndex
	if spec.Docker {
		indexType = types.DockerManifestList
	}
	var children []PushedImage
	for _, p := range spec.Platforms {
		img := NewImage(t, ImageSpec{Platform: p, Layers: spec.Layers, LayerSize: spec.LayerSize, Docker: spec.Docker})
		children = append(children, describeImage(t, "", img, ParsePlatform(t, p)))
	}
	children = append(children, spec.Existing...)

	idx := mutate.IndexMediaType(empty.Index, indexType)
	for i := range children {
		c := &children[i]
		c.Ref = r.Context().Digest(c.Digest.String()).String()
		if err := remote.Write(parseRef(t, c.Ref), c.Image, remoteOptions(ctx)...); err != nil {
			t.Fatalf("push index child %s: %v", c.Ref, err)
		}
		plat := c.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: c.Image,
			Descriptor: v1.Descriptor{
				MediaType: types.MediaType(c.MediaType),
				Platform:  &plat,
			},
		})
	}
	if err := remote.WriteIndex(r, idx, remoteOptions(ctx)...); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("index digest: %v", err)
	}
	size, err := idx.Size()
	if err != nil {
		t.Fatalf("index size: %v", err)
	}
	return PushedIndex{
		Ref:       ref,
		Digest:    digest.Digest(d.String()),
		MediaType: string(indexType),
		Size:      size,
		Children:  children,
		Index:     idx,
	}
}

func describeImage(t testing.TB, ref string, img v1.Image, platform v1.Platform) PushedImage {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("image digest: %v", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatalf("image media type: %v", err)
	}
	size, err := img.Size()
	if err != nil {
		t.Fatalf("image size: %v", err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatalf("image config digest: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatalf("image layers: %v", err)
	}
	p := PushedImage{
		Ref:       ref,
		Digest:    digest.Digest(d.String()),
		MediaType: string(mt),
		Size:      size,
		Platform:  platform,
		Config:    digest.Digest(cfg.String()),
		Image:     img,
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			t.Fatalf("layer digest: %v", err)
		}
		p.Layers = append(p.Layers, digest.Digest(ld.String()))
	}
	return p
}

func parseRef(t testing.TB, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure, name.StrictValidation)
	if err != nil {
		t.Fatalf("parse reference %q: %v", ref, err)
	}
	return r
}

// pushTransport is a plain transport: ggcr speaks http to loopback registries
// given name.Insecure.
var pushTransport = http.DefaultTransport.(*http.Transport).Clone()

func remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(pushTransport),
		remote.WithUserAgent(HarnessUserAgent),
	}
}
