package mirror

import (
	"net/http"

	"github.com/opencontainers/go-digest"
)

// Ref names what the mirror was asked for: a manifest or blob by digest in
// a repository of a registry.
type Ref struct {
	Registry   string
	Repository string
	// Kind is "manifests" or "blobs".
	Kind   string
	Digest digest.Digest
}

// Fallback serves what the local store cannot (cluster mode: a peer that
// holds it). ServeFallback either answers the request in full and returns
// true, or writes nothing and returns false, and the mirror answers 404.
// It must verify what it serves and bound every wait.
type Fallback interface {
	ServeFallback(w http.ResponseWriter, r *http.Request, ref Ref) bool
}

// WithFallback asks f for what the local store lacks. The default answers
// 404 at once. The mirror that serves peers has none, so a peer's request
// is never passed on to further peers.
func WithFallback(f Fallback) Option { return func(m *Mirror) { m.fallback = f } }

// serveFallback tries the fallback for a local miss.
func (m *Mirror) serveFallback(w http.ResponseWriter, r *http.Request, req mirrorRequest) bool {
	if m.fallback == nil {
		return false
	}
	ref := Ref{Registry: req.registry, Repository: req.repo, Kind: req.kind, Digest: req.digest}
	if !m.fallback.ServeFallback(w, r, ref) {
		return false
	}
	m.metrics.request("served_by_peer")
	return true
}
