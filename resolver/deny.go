package resolver

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/imageref"
)

// Denier says whether the operator deleted content on purpose (a revoked
// image, a layer that leaked a secret), and by which entry. internal/deny's
// list is one; heal.WithDeny takes the same.
type Denier interface {
	Denied(registry, repo string, d digest.Digest) (entry string, denied bool)
}

// Option configures a HealingResolver.
type Option func(*HealingResolver)

// WithDeny leaves the registry's NotFound standing for what d denies: it is
// neither served from the local store nor healed (give the Healer
// heal.WithDeny too, for what a heal of an allowed root would push). The
// default denies nothing.
func WithDeny(d Denier) Option { return func(r *HealingResolver) { r.deny = d } }

// denied wraps notFound, naming the entry, when the list denies d in ref's
// repository; nil otherwise.
func (r *HealingResolver) denied(ref imageref.Ref, d digest.Digest, notFound error) error {
	if r.deny == nil {
		return nil
	}
	if entry, ok := r.deny.Denied(ref.Registry, ref.Repository, d); ok {
		return fmt.Errorf("%w (not served from the local store: denied by the deny list entry %q)", notFound, entry)
	}
	return nil
}
