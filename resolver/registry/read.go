package registry

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/imageref"
)

// Reads: a registry a heal takes content from (a source), not the one it
// heals. The same hosts.toml, credentials, retries and stall timeout apply;
// only HEAD and GET are sent, with a pull-only token scope.

// ReadSession opens a session for reading repo of registry: its host is
// the registry's own (its push-capable host), else the first host
// hosts.toml lets pull. Reading heals nothing, so registry need not be
// among the registries regmend may heal (WithRegistries).
func (r *Remote) ReadSession(ctx context.Context, registry, repo string) (*Session, error) {
	if err := imageref.ValidateRegistry(registry); err != nil {
		return nil, err
	}
	if err := imageref.ValidateRepository(repo); err != nil {
		return nil, err
	}
	hosts, err := r.hosts(ctx, registry)
	if err != nil {
		return nil, err
	}
	var pick *docker.RegistryHost
	for i, h := range hosts {
		if h.Capabilities.Has(docker.HostCapabilityPush) {
			pick = &hosts[i]
			break
		}
		if pick == nil && h.Capabilities.Has(docker.HostCapabilityPull) {
			pick = &hosts[i]
		}
	}
	if pick == nil {
		return nil, fmt.Errorf("no host to read %s from in its configured hosts: %w", registry, errdefs.ErrNotFound)
	}
	h := *pick
	if h.Host == "" || h.Scheme != "http" && h.Scheme != "https" {
		return nil, fmt.Errorf("host %q of %s: scheme %q: want a host, and http or https: %w", h.Host, registry, h.Scheme, errdefs.ErrInvalidArgument)
	}
	h.Client = registryClient(h.Client, r.stall)
	return &Session{registry: registry, repo: repo, host: h, retry: r.retry, counts: &requestCounts{}, limiter: r.limiter}, nil
}

// pullScoped adds the repository's pull token scope only: a reader may
// hold no right to push.
func (s *Session) pullScoped(ctx context.Context) context.Context {
	sctx, err := docker.ContextWithRepositoryScope(ctx, reference.Spec{Locator: s.registry + "/" + s.repo}, false)
	if err != nil {
		return ctx
	}
	return sctx
}

// headPull is head with a pull-only scope.
func (s *Session) headPull(ctx context.Context, kind, ref string) (*http.Response, error) {
	return s.headIn(s.pullScoped(ctx), kind, ref)
}

// Stat asks the registry for dgst as a manifest (HEAD manifests/<dgst>,
// accepting every manifest type), then as a blob (HEAD blobs/<dgst>).
// The descriptor has the size the registry announced and, for a
// manifest, its Content-Type as media type; a blob's is empty (registries
// send application/octet-stream). Absent from both is an error wrapping
// errdefs.ErrNotFound.
func (s *Session) Stat(ctx context.Context, dgst digest.Digest) (ocispec.Descriptor, error) {
	return s.stat(ctx, dgst, "manifests", "blobs")
}

// StatBlob is Stat asking the blobs endpoint first: for content that is
// most likely a layer or config, one HEAD instead of two.
func (s *Session) StatBlob(ctx context.Context, dgst digest.Digest) (ocispec.Descriptor, error) {
	return s.stat(ctx, dgst, "blobs", "manifests")
}

func (s *Session) stat(ctx context.Context, dgst digest.Digest, kinds ...string) (ocispec.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("digest %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	for _, kind := range kinds {
		resp, err := s.headPull(ctx, kind, dgst.String())
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("is %s in %s: %w", dgst, s.Ref(""), err)
		}
		if resp.StatusCode == http.StatusNotFound {
			continue
		}
		desc, err := described(resp, dgst)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("%s %s in %s: %w", kindName(kind), dgst, s.Ref(""), err)
		}
		if kind == "blobs" {
			desc.MediaType = ""
		}
		return desc, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("%s not in %s (neither a manifest nor a blob): %w", dgst, s.Ref(""), errdefs.ErrNotFound)
}

// Resolve returns the descriptor tag points at (HEAD manifests/<tag>):
// digest from Docker-Content-Digest, size from Content-Length, media type
// from Content-Type. An absent tag is an error wrapping errdefs.ErrNotFound.
func (s *Session) Resolve(ctx context.Context, tag string) (ocispec.Descriptor, error) {
	if err := imageref.ValidateTag(tag); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve in %s: %w", s.Ref(""), err)
	}
	resp, err := s.headPull(ctx, "manifests", tag)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", s.Ref(":"+tag), err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s: not in the registry: %w", s.Ref(":"+tag), errdefs.ErrNotFound)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s: registry sent no valid Docker-Content-Digest: %w", s.Ref(":"+tag), errdefs.ErrUnknown)
	}
	desc, err := described(resp, d)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s: %w", s.Ref(":"+tag), err)
	}
	return desc, nil
}

// described makes the descriptor a HEAD's answer gives for dgst.
func described(resp *http.Response, dgst digest.Digest) (ocispec.Descriptor, error) {
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != dgst.String() {
		return ocispec.Descriptor{}, fmt.Errorf("registry answered for digest %s: %w", got, errdefs.ErrUnknown)
	}
	size := resp.ContentLength
	if size < 0 {
		n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
		if err != nil || n < 0 {
			return ocispec.Descriptor{}, fmt.Errorf("registry sent no Content-Length: %w", errdefs.ErrUnknown)
		}
		size = n
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return ocispec.Descriptor{MediaType: mt, Digest: dgst, Size: size}, nil
}

// OpenBlob streams desc's bytes from offset on (GET blobs/<digest>, with
// Range: bytes=<offset>-<desc.Size-1> when offset > 0; a registry that ignores the
// Range has the bytes before offset read and dropped). The body is
// neither checked nor bounded: the caller verifies what it reads. Absent
// is an error wrapping errdefs.ErrNotFound; transient failures before the
// answer are retried.
func (s *Session) OpenBlob(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	if offset < 0 || desc.Size > 0 && offset >= desc.Size {
		return nil, fmt.Errorf("blob %s: offset %d outside its %d bytes: %w", desc.Digest, offset, desc.Size, errdefs.ErrInvalidArgument)
	}
	hdr := http.Header{}
	if offset > 0 {
		// The last byte named too: go-containerregistry's registry refuses
		// an open-ended range (416).
		last := ""
		if desc.Size > 0 {
			last = strconv.FormatInt(desc.Size-1, 10)
		}
		hdr.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-"+last)
	}
	resp, err := s.get(ctx, "blobs", desc.Digest, hdr)
	if err != nil {
		return nil, err
	}
	switch {
	case offset == 0 && resp.StatusCode == http.StatusOK:
	case offset > 0 && resp.StatusCode == http.StatusPartialContent:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != offset {
			resp.Body.Close()
			return nil, fmt.Errorf("blob %s in %s: GET from byte %d answered Content-Range %q: %w", desc.Digest, s.Ref(""), offset, resp.Header.Get("Content-Range"), errdefs.ErrUnknown)
		}
	case offset > 0 && resp.StatusCode == http.StatusOK:
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("blob %s in %s: the registry ignored the Range and its body ended before byte %d: %v: %w", desc.Digest, s.Ref(""), offset, err, errdefs.ErrDataLoss)
		}
	default:
		resp.Body.Close()
		return nil, fmt.Errorf("blob %s in %s: GET from byte %d answered %s: %w", desc.Digest, s.Ref(""), offset, resp.Status, errdefs.ErrUnknown)
	}
	return resp.Body, nil
}

// OpenManifest streams the manifest or index desc names (GET
// manifests/<digest>, accepting every manifest type). The caller verifies
// its bytes. Absent is an error wrapping errdefs.ErrNotFound.
func (s *Session) OpenManifest(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	resp, err := s.get(ctx, "manifests", desc.Digest, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("manifest %s in %s: GET answered %s: %w", desc.Digest, s.Ref(""), resp.Status, errdefs.ErrUnknown)
	}
	return resp.Body, nil
}

// get sends GET /v2/<repo>/<kind>/<digest>, retrying transient failures
// and statuses, and returns a 200 or 206 answer with its body open; 404 is
// errdefs.ErrNotFound, any other status the registry's refusal.
func (s *Session) get(ctx context.Context, kind string, dgst digest.Digest, hdr http.Header) (*http.Response, error) {
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("digest %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	ctx = s.pullScoped(ctx)
	u := s.endpoint(kind, dgst.String())
	var resp *http.Response
	err := s.retry.do(ctx, func() error {
		r, err := s.send(ctx, http.MethodGet, u, hdr, nil, 0)
		if err != nil {
			return fmt.Errorf("read %s %s from %s: %w", kindName(kind), dgst, s.Ref(""), err)
		}
		switch r.StatusCode {
		case http.StatusOK, http.StatusPartialContent:
			resp = r
			return nil
		case http.StatusNotFound:
			drain(r)
			return fmt.Errorf("%s %s not in %s: %w", kindName(kind), dgst, s.Ref(""), errdefs.ErrNotFound)
		}
		defer drain(r)
		return fmt.Errorf("read %s %s from %s: %w", kindName(kind), dgst, s.Ref(""), statusError(r))
	})
	return resp, err
}

// rangeStart reads the first byte of a Content-Range "bytes a-b/N".
func rangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	return n, err == nil
}
