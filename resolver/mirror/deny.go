package mirror

import (
	"net/http"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// Denier says whether the operator deleted content on purpose (a revoked
// image, a layer that leaked a secret), and by which entry. internal/deny's
// list is one.
type Denier interface {
	Denied(registry, repo string, d digest.Digest) (entry string, denied bool)
}

// WithDeny answers a request for what d denies exactly as for absent content
// (404, the same OCI error body), asks no fallback for it and queues no heal:
// containerd's pull then fails as it would without regmend. The default
// denies nothing.
func WithDeny(d Denier) Option { return func(m *Mirror) { m.deny = d } }

// refuseDenied answers 404 for a denied request and reports whether it did.
func (m *Mirror) refuseDenied(w http.ResponseWriter, r *http.Request, req mirrorRequest) bool {
	if m.deny == nil {
		return false
	}
	entry, denied := m.deny.Denied(req.registry, req.repo, req.digest)
	if !denied {
		return false
	}
	log.G(r.Context()).WithField("registry", req.registry).WithField("repo", req.repo).WithField("digest", req.digest).
		WithField("entry", entry).Info("mirror: denied by the deny list; answered as absent")
	m.absent(w, r, req, "denied")
	return true
}
