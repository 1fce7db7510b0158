package imagebuild

import (
	"fmt"
	"maps"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths inside the image.
const (
	BinaryPath   = "/usr/bin/regmend"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// OCI annotation keys the image carries, on the index, on each manifest and
// as labels of each config.
const (
	AnnotationVersion  = "org.opencontainers.image.version"
	AnnotationSource   = "org.opencontainers.image.source"
	AnnotationRevision = "org.opencontainers.image.revision"
	AnnotationCreated  = "org.opencontainers.image.created"
	AnnotationTitle    = "org.opencontainers.image.title"
)

// Binary is a regmend executable built for one platform.
type Binary struct {
	// Platform is what the binary runs on, e.g. {OS: "linux", Architecture: "arm64"}.
	Platform v1.Platform
	// Path is the file on disk.
	Path string
}

type options struct {
	caBundle    string
	created     time.Time
	annotations map[string]string
}

// Option configures Build.
type Option func(*options) error

// WithCABundle names the CA bundle copied to CABundlePath. The default value
// is /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates).
func WithCABundle(path string) Option {
	return func(o *options) error {
		if path == "" {
			return fmt.Errorf("CA bundle: empty path")
		}
		o.caBundle = path
		return nil
	}
}

// WithCreated sets the time recorded as the image's creation time and as every
// file's modification time. The default value is the Unix epoch, so builds are
// reproducible unless a time (such as the commit's) is given.
func WithCreated(t time.Time) Option {
	return func(o *options) error {
		o.created = t.UTC()
		return nil
	}
}

// WithVersion sets org.opencontainers.image.version (the release, or `git
// describe`). By default it is absent.
func WithVersion(v string) Option { return withAnnotation(AnnotationVersion, v) }

// WithSource sets org.opencontainers.image.source, the repository URL. By
// default it is absent.
func WithSource(s string) Option { return withAnnotation(AnnotationSource, s) }

// WithRevision sets org.opencontainers.image.revision, the commit. By default
// it is absent.
func WithRevision(r string) Option { return withAnnotation(AnnotationRevision, r) }

func withAnnotation(key, value string) Option {
	return func(o *options) error {
		if value != "" {
			o.annotations[key] = value
		}
		return nil
	}
}

// Build returns the image index: one image per binary, in the order given,
// each with its platform in the index entry.
func Build(binaries []Binary, opts ...Option) (v1.ImageIndex, error) {
	o := options{caBundle: "/etc/ssl/certs/ca-certificates.crt", created: time.Unix(0, 0).UTC(), annotations: map[string]string{}}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if len(binaries) == 0 {
		return nil, fmt.Errorf("image: no binaries")
	}
	anns := maps.Clone(o.annotations)
	anns[AnnotationCreated] = o.created.Format(time.RFC3339)
	anns[AnnotationTitle] = "regmend"

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, b := range binaries {
		p := b.Platform
		if seen[p.String()] {
			return nil, fmt.Errorf("image: platform %s given twice", p.String())
		}
		seen[p.String()] = true
		img, err := platformImage(b, o, anns)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p.String(), err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	return mutate.Annotations(idx, anns).(v1.ImageIndex), nil
}

// platformImage is the single-layer image for one binary.
func platformImage(b Binary, o options, anns map[string]string) (v1.Image, error) {
	layer, err := rootLayer(b.Path, o.caBundle, o.created)
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = b.Platform.OS, b.Platform.Architecture, b.Platform.Variant
	cf.Created = v1.Time{Time: o.created}
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"--help"},
		// SSL_CERT_FILE is where crypto/x509 looks first anyway; naming it
		// keeps TLS working should the bundle ever move.
		Env:    []string{"PATH=/usr/bin", "SSL_CERT_FILE=" + CABundlePath},
		Labels: maps.Clone(anns),
	}
	cf.History = []v1.History{{Created: v1.Time{Time: o.created}, CreatedBy: "regmend imagebuild", Comment: "regmend and the CA bundle"}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}
