package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/imageref"
)

// Mirror serves the read-only part of the distribution API that containerd
// uses, from the node's content store. containerd reaches it only after the
// registry answered 404 (it is listed after the registry in hosts.toml), with
// ?ns=<registry> naming the upstream. Every manifest or blob it serves
// queues a heal of that content's root into the registry; the response does
// not wait for it.
//
// It answers 404 for anything it cannot serve, never 5xx: containerd ranks a
// 5xx above 404, which would turn a clean "not found" into "unexpected
// status" for every pull that misses. Tags are never served: a tag must not
// resolve to stale local content.
type Mirror struct {
	store    content.Store
	allowed  Allowlist
	queue    Enqueuer
	metrics  *Metrics
	fallback Fallback
	deny     Denier
}

// Allowlist says which registries the mirror serves.
type Allowlist interface {
	Allowed(registry string) bool
}

// Enqueuer takes a request to heal what holds a digest in registry/repo;
// it never blocks and reports whether a heal was queued.
type Enqueuer interface {
	Enqueue(registry, repo string, d digest.Digest) bool
}

// Option configures a Mirror.
type Option func(*Mirror)

// WithHealQueue heals what the mirror serves through q. Without it the
// mirror only serves.
func WithHealQueue(q Enqueuer) Option { return func(m *Mirror) { m.queue = q } }

// WithMetrics records requests by outcome.
func WithMetrics(mt *Metrics) Option { return func(m *Mirror) { m.metrics = mt } }

// New serves store for the registries allowed names (a registry.Remote).
func New(store content.Store, allowed Allowlist, opts ...Option) *Mirror {
	m := &Mirror{store: store, allowed: allowed}
	for _, o := range opts {
		o(m)
	}
	return m
}

// mirrorRequest is a parsed /v2/<name>/<kind>/<digest> request.
type mirrorRequest struct {
	registry, repo, kind string
	digest               digest.Digest
}

// ServeHTTP answers one distribution API request.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		m.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "UNSUPPORTED", "regmend's mirror is read-only")
		return
	}
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}\n"))
		return
	}
	req, status, code, msg := parseMirrorRequest(r)
	if status != 0 {
		outcome := "bad_request"
		if status == http.StatusNotFound {
			outcome = "not_found"
		}
		m.fail(w, r, status, outcome, code, msg)
		return
	}
	if req.registry == "" || !m.allowed.Allowed(req.registry) {
		m.fail(w, r, http.StatusNotFound, "not_allowed", "NAME_UNKNOWN", "registry not served by regmend")
		return
	}
	if m.refuseDenied(w, r, req) { // deny.go
		return
	}
	ctx := r.Context()
	info, err := m.info(ctx, req.digest)
	if err != nil || !content.FromRepository(info.Labels, req.registry, req.repo) {
		// Only content pulled from this repository of this registry is
		// served (and healed): naming a registry in ns, or a digest under
		// another repository, does not unlock content that came from
		// elsewhere, which the registry may refuse this caller.
		if m.serveFallback(w, r, req) {
			return
		}
		m.notFound(w, r, req)
		return
	}
	desc := ocispec.Descriptor{Digest: req.digest, Size: info.Size, MediaType: "application/octet-stream"}
	if req.kind == "manifests" {
		b, err := content.ReadDocument(ctx, m.store, desc)
		if err == nil {
			desc.MediaType, err = content.MediaTypeOf(b, req.digest)
		}
		if err != nil {
			log.G(ctx).WithError(err).WithField("digest", req.digest).Warn("mirror: local manifest unusable")
			m.notFound(w, r, req)
			return
		}
		m.serveHeaders(w, desc)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method == http.MethodGet {
			w.Write(b)
		}
	} else {
		ra, err := m.store.ReaderAt(ctx, desc)
		if err != nil {
			m.notFound(w, r, req)
			return
		}
		defer ra.Close()
		m.serveHeaders(w, desc)
		// ServeContent streams and answers single Range requests with 206.
		http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(content.NewReadAhead(ra), 0, desc.Size))
	}
	m.metrics.request("served")
	if m.queue != nil {
		m.queue.Enqueue(req.registry, req.repo, req.digest)
	}
}

// storeWait bounds how long a request waits for containerd's content store
// when it answers Unavailable. A request comes from a running containerd,
// so regmend's connection to it is only reconnecting: after containerd
// restarts, gRPC may back off up to containerd's client timeout (10s)
// before it dials again, and answering 404 meanwhile fails the pull.
const storeWait = 12 * time.Second

func (m *Mirror) info(ctx context.Context, d digest.Digest) (ctrcontent.Info, error) {
	var info ctrcontent.Info
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		var err error
		if info, err = m.store.Info(ctx, d); err != nil && !errdefs.IsUnavailable(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(backoff.NewConstantBackOff(200*time.Millisecond)), backoff.WithMaxElapsedTime(storeWait))
	return info, err
}

func (m *Mirror) serveHeaders(w http.ResponseWriter, desc ocispec.Descriptor) {
	h := w.Header()
	h.Set("Content-Type", desc.MediaType)
	h.Set("Docker-Content-Digest", desc.Digest.String())
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	h.Set("ETag", `"`+desc.Digest.String()+`"`)
}

func (m *Mirror) notFound(w http.ResponseWriter, r *http.Request, req mirrorRequest) {
	m.absent(w, r, req, "not_found")
}

// absent answers as for content not in the store, counted under outcome.
func (m *Mirror) absent(w http.ResponseWriter, r *http.Request, req mirrorRequest, outcome string) {
	code := "BLOB_UNKNOWN"
	if req.kind == "manifests" {
		code = "MANIFEST_UNKNOWN"
	}
	m.fail(w, r, http.StatusNotFound, outcome, code, "not in this node's content store")
}

// fail answers with an OCI error body.
func (m *Mirror) fail(w http.ResponseWriter, r *http.Request, status int, outcome, code, msg string) {
	m.metrics.request(outcome)
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// parseMirrorRequest splits /v2/<name>/(manifests|blobs)/<digest>?ns=<registry>.
// A non-zero status is the error answer: 404 for what is not served, 400
// for a malformed name or digest.
func parseMirrorRequest(r *http.Request) (req mirrorRequest, status int, code, msg string) {
	p, ok := strings.CutPrefix(r.URL.Path, "/v2/")
	parts := strings.Split(p, "/")
	if !ok || len(parts) < 3 {
		return req, http.StatusNotFound, "NAME_UNKNOWN", "not a distribution API path"
	}
	ref, kind := parts[len(parts)-1], parts[len(parts)-2]
	req.repo, req.kind = strings.Join(parts[:len(parts)-2], "/"), kind
	req.registry = r.URL.Query().Get("ns")
	if kind != "manifests" && kind != "blobs" {
		return req, http.StatusNotFound, "NAME_UNKNOWN", "not a distribution API path"
	}
	if err := imageref.ValidateRepository(req.repo); err != nil {
		return req, http.StatusBadRequest, "NAME_INVALID", "invalid repository name"
	}
	if req.registry != "" && imageref.ValidateRegistry(req.registry) != nil {
		return req, http.StatusBadRequest, "NAME_INVALID", "invalid ns registry name"
	}
	if !strings.Contains(ref, ":") {
		if kind == "manifests" {
			return req, http.StatusNotFound, "MANIFEST_UNKNOWN", "tags are not served by regmend"
		}
		return req, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest"
	}
	d, err := digest.Parse(ref)
	if err != nil {
		if errors.Is(err, digest.ErrDigestUnsupported) {
			return req, http.StatusBadRequest, "DIGEST_INVALID", "unsupported digest algorithm"
		}
		return req, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest"
	}
	req.digest = d
	return req, 0, "", ""
}
