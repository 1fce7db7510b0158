package peers

import (
	"context"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/resolver/mirror"
)

// Denier says whether the operator deleted content on purpose, and by which
// entry (internal/deny's list is one).
type Denier interface {
	Denied(registry, repo string, d digest.Digest) (entry string, denied bool)
}

// WithClientDeny makes ServeFallback fetch nothing d denies from peers: it
// returns false at once, and the mirror answers 404. The peer endpoint's
// side is its mirrors' (mirror.WithDeny): a denied digest is not served to
// peers either. The default denies nothing.
func WithClientDeny(d Denier) ClientOption {
	return func(c *Client) error { c.deny = d; return nil }
}

// denied reports whether ref is denied, logging the entry.
func (c *Client) denied(ctx context.Context, ref mirror.Ref) bool {
	if c.deny == nil {
		return false
	}
	entry, ok := c.deny.Denied(ref.Registry, ref.Repository, ref.Digest)
	if ok {
		log.G(ctx).WithField("registry", ref.Registry).WithField("repo", ref.Repository).WithField("digest", ref.Digest).
			WithField("entry", entry).Info("peers: denied by the deny list; not fetched from peers")
	}
	return ok
}
