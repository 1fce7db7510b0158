package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/resolver/registry"
)

// RegistrySource reads one repository of another registry over regmend's
// registry client (package resolver/registry: the node's hosts.toml,
// config.json credentials, retries with backoff, the stall timeout). It
// sends only HEAD and GET.
type RegistrySource struct {
	sess           *registry.Session
	registry, repo string
	labels         map[string]string // WithMountInto: the source label of every blob
}

// RegistryOption configures a RegistrySource.
type RegistryOption func(*registryConfig) error

type registryConfig struct{ mountInto string }

// WithMountInto names the registry the heal writes to (host:port). When it
// is the source's own registry, exactly, every blob's Info carries the
// label containerd.io/distribution.source.<host>=<repo>, so the heal asks
// that registry to mount the blob across from the source repository
// instead of sending its bytes. For any other registry it does nothing: a
// mount can only come from the registry being written to.
func WithMountInto(destRegistry string) RegistryOption {
	return func(c *registryConfig) error {
		if err := imageref.ValidateRegistry(destRegistry); err != nil {
			return err
		}
		c.mountInto = destRegistry
		return nil
	}
}

// NewRegistry returns the source reading repo of registryName through
// remote. It sends nothing yet.
func NewRegistry(ctx context.Context, remote *registry.Remote, registryName, repo string, opts ...RegistryOption) (*RegistrySource, error) {
	if remote == nil {
		return nil, fmt.Errorf("registry source %s/%s: no registry client: %w", registryName, repo, errdefs.ErrInvalidArgument)
	}
	var c registryConfig
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	sess, err := remote.ReadSession(ctx, registryName, repo)
	if err != nil {
		return nil, fmt.Errorf("registry source %s/%s: %w", registryName, repo, err)
	}
	r := &RegistrySource{sess: sess, registry: registryName, repo: repo}
	if c.mountInto == registryName {
		r.labels = map[string]string{content.SourceLabelPrefix + content.SourceHost(registryName): repo}
	}
	return r, nil
}

// String names the source as registry/repository.
func (r *RegistrySource) String() string { return r.registry + "/" + r.repo }

// Requests returns how many requests the source sent.
func (r *RegistrySource) Requests() int64 { return r.sess.Requests() }

// Info asks the registry for dgst (a blob, else a manifest: a closure
// holds more blobs than manifests, so most take one HEAD): absent is
// errdefs.ErrNotFound.
func (r *RegistrySource) Info(ctx context.Context, dgst digest.Digest) (ctrcontent.Info, error) {
	desc, err := r.sess.StatBlob(ctx, dgst)
	if err != nil {
		return ctrcontent.Info{}, err
	}
	var labels map[string]string
	if r.labels != nil {
		labels = map[string]string{}
		for k, v := range r.labels {
			labels[k] = v
		}
	}
	return ctrcontent.Info{Digest: dgst, Size: desc.Size, Labels: labels}, nil
}

// Resolve resolves a tag (HEAD manifests/<tag>) or a digest (Stat; it must
// be a manifest or index), its media type from the answer's Content-Type
// or, when that names none, from the document.
func (r *RegistrySource) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	if ref == "" {
		return ocispec.Descriptor{}, fmt.Errorf("%s: name a tag or a digest to resolve: %w", r, errdefs.ErrInvalidArgument)
	}
	var desc ocispec.Descriptor
	d, err := digest.Parse(ref)
	byDigest := err == nil
	if !byDigest {
		desc, err = r.sess.Resolve(ctx, ref)
	} else {
		desc, err = r.sess.Stat(ctx, d)
	}
	if err != nil || content.KindOf(desc.MediaType).IsManifest() {
		return desc, err
	}
	// No manifest type in its Content-Type (a blob, or a registry that
	// sends none): read the document and say what it is.
	doc := desc
	doc.MediaType = ocispec.MediaTypeImageManifest // any manifest type: ReaderAt asks manifests/
	b, err := content.ReadDocument(ctx, r, doc)
	switch {
	case byDigest && errdefs.IsNotFound(err):
		// Stat found the digest, the manifests endpoint does not: a blob.
		return ocispec.Descriptor{}, fmt.Errorf("%s in %s is not a manifest or index: %v: %w", ref, r, err, errdefs.ErrInvalidArgument)
	case err != nil:
		// The registry failing (5xx, 401, a cancel) is not the caller's
		// mistake: its class is kept.
		return ocispec.Descriptor{}, fmt.Errorf("%s in %s: reading it to learn its type: %w", ref, r, err)
	}
	if desc.MediaType, err = content.MediaTypeOf(b, desc.Digest); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s in %s is not a manifest or index: %w", ref, r, err) // MediaTypeOf classifies
	}
	return desc, nil
}

// ReaderAt opens desc (GET manifests/ for a manifest or index, blobs/
// otherwise) and serves sequential reads from that one answer, so reading
// a blob through costs one GET; a read elsewhere than where the body is
// opens it again from there, with a Range. Nothing is buffered beyond what
// each read asks.
func (r *RegistrySource) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("digest %q: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if desc.MediaType == "" {
		// No parent named it (content.Describe): ask which it is.
		d, err := r.sess.Stat(ctx, desc.Digest)
		if err != nil {
			return nil, err
		}
		desc.MediaType = d.MediaType
	}
	open := func(ctx context.Context, off int64) (io.ReadCloser, error) {
		if content.KindOf(desc.MediaType).IsManifest() {
			rc, err := r.sess.OpenManifest(ctx, desc)
			if err == nil && off > 0 {
				// Manifests are small and a registry serves no Range of
				// them: skip to off.
				if _, err = io.CopyN(io.Discard, rc, off); err != nil {
					rc.Close()
					return nil, fmt.Errorf("manifest %s in %s ended before byte %d: %v: %w", desc.Digest, r, off, err, errdefs.ErrDataLoss)
				}
			}
			return rc, err
		}
		return r.sess.OpenBlob(ctx, desc, off)
	}
	ra := &remoteReaderAt{ctx: ctx, desc: desc, open: open, name: r.String()}
	if desc.Size > 0 {
		body, err := open(ctx, 0)
		if err != nil {
			return nil, err
		}
		ra.body = body
	}
	return ra, nil
}

// maxResumes is how many times in a row a body that broke off is opened
// again from where it ended without a byte more coming; maxReopens bounds
// them over the whole blob, so a registry that drops every connection
// after a little cannot turn one read into thousands of GETs.
// maxEmptyReads is how many reads in a row may return nothing and no
// error before the body counts as stuck (bufio's limit).
const (
	maxResumes    = 3
	maxReopens    = 16
	maxEmptyReads = 100
)

// remoteReaderAt serves ReadAt from one open answer of the registry.
type remoteReaderAt struct {
	ctx  context.Context // the heal's, for every GET of this blob
	desc ocispec.Descriptor
	open func(ctx context.Context, off int64) (io.ReadCloser, error)
	name string

	mu      sync.Mutex
	body    io.ReadCloser // nil: none open
	pos     int64         // offset of body's next byte
	reopens int           // bodies opened again after one broke off
}

func (r *remoteReaderAt) Size() int64 { return r.desc.Size }

func (r *remoteReaderAt) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	return nil
}

// ReadAt fills p from off, or returns io.EOF at the blob's end. A body
// that breaks off (the connection dropped, a stall) is opened again from
// where it ended, maxResumes times without progress (a body answering
// nothing maxEmptyReads times in a row broke off too); a registry whose
// answers keep ending early served less than it announced: that is
// errdefs.ErrDataLoss, never retried as a dropped connection.
func (r *remoteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off < 0 {
		return 0, fmt.Errorf("blob %s: negative offset %d: %w", r.desc.Digest, off, errdefs.ErrInvalidArgument)
	}
	if off >= r.desc.Size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), r.desc.Size-off)]
	if r.body != nil && r.pos != off {
		r.body.Close()
		r.body = nil
	}
	n, stuck, empty := 0, 0, 0
	for n < len(want) {
		if r.body == nil {
			body, err := r.open(r.ctx, off+int64(n))
			if err != nil {
				return n, err
			}
			r.body, r.pos = body, off+int64(n)
		}
		m, err := r.body.Read(want[n:])
		n += m
		r.pos += int64(m)
		if m > 0 {
			stuck, empty = 0, 0
		}
		if err == nil && m == 0 {
			// A body that keeps answering nothing, not even an error,
			// would spin here: it broke off as surely as one that ended.
			if empty++; empty >= maxEmptyReads {
				err = io.ErrNoProgress
			}
		}
		if err == nil {
			continue
		}
		empty = 0
		r.body.Close()
		r.body = nil
		if n == len(want) {
			break
		}
		if ctxErr := r.ctx.Err(); ctxErr != nil {
			return n, ctxErr
		}
		if r.reopens++; r.reopens > maxReopens {
			// Not err itself: a plain io.EOF in the chain would read as
			// the blob's clean end.
			return n, fmt.Errorf("blob %s from %s: the registry's answer broke off %d times, last at byte %d of %d: %v: %w: %w", r.desc.Digest, r.name, r.reopens, r.pos, r.desc.Size, err, io.ErrUnexpectedEOF, errdefs.ErrDataLoss)
		}
		if stuck++; stuck > maxResumes {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrNoProgress) {
				return n, fmt.Errorf("blob %s from %s: the registry's answers end at byte %d of its %d: %v: %w", r.desc.Digest, r.name, r.pos, r.desc.Size, err, errdefs.ErrDataLoss)
			}
			return n, fmt.Errorf("blob %s from %s: reading at byte %d: %w", r.desc.Digest, r.name, r.pos, err)
		}
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}
