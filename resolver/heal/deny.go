package heal

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/content"
)

// Denier says whether the operator deleted content on purpose (a revoked
// image, a layer that leaked a secret), and by which entry. internal/deny's
// list is one.
type Denier interface {
	Denied(registry, repo string, d digest.Digest) (entry string, denied bool)
}

// StatusDenied: the registry lacks it and the deny list forbids pushing it
// back; Reason names the entry. A manifest or index above it that the
// registry lacks cannot be pushed either (a registry refuses a manifest
// whose children it lacks): it is unhealable.
const StatusDenied Status = "denied"

// WithDeny refuses to heal what d denies. A denied root is refused before
// anything is asked, with an error wrapping errdefs.ErrFailedPrecondition
// that names the entry: the content is here, the operator's list forbids
// it (ErrNotFound would read as a partial heal). A denied node inside an
// allowed root's closure is never pushed: the plan marks it StatusDenied,
// the rest is healed, and the heal is partial (Result.Denied, and the error
// a partial heal returns). Heal, Check (so `regmend check --fix` and the
// sweep) and the Queue all go through the Healer, so all of them obey it.
// The default denies nothing.
func WithDeny(d Denier) HealerOption {
	return func(h *Healer) error { h.deny = d; return nil }
}

// refuseRoot returns the error for a denied root, or nil.
func (h *Healer) refuseRoot(t Target) error {
	if h.deny == nil {
		return nil
	}
	if entry, ok := h.deny.Denied(t.Registry, t.Repository, t.Root.Digest); ok {
		return fmt.Errorf("heal %s: %s: %w", t, deniedReason(entry), errDenied)
	}
	return nil
}

// deniedNow asks the Denier again, now, whether d may be pushed to t's
// repository (the root's entry denies its whole closure). A plan's answer
// can be older than an entry: a heal waits its turn after refuseRoot, and
// check --fix reuses its plan. The lookup takes no lock.
func (h *Healer) deniedNow(t Target, d digest.Digest) (string, bool) {
	if h.deny == nil {
		return "", false
	}
	if entry, ok := h.deny.Denied(t.Registry, t.Repository, t.Root.Digest); ok {
		return entry, true
	}
	return h.deny.Denied(t.Registry, t.Repository, d)
}

// errDenied marks a root the deny list names.
var errDenied = fmt.Errorf("not healed: %w", errdefs.ErrFailedPrecondition)

// denial decides, for one plan, which nodes the deny list keeps from being
// pushed: when the root is denied, all of them.
type denial struct {
	deny      Denier
	t         Target
	rootEntry string
	rootAsked bool
}

// denied reports the entry that keeps n from being pushed, if any.
func (dn *denial) denied(n *content.Node) (string, bool) {
	if dn == nil || dn.deny == nil {
		return "", false
	}
	if !dn.rootAsked {
		dn.rootAsked = true
		dn.rootEntry, _ = dn.deny.Denied(dn.t.Registry, dn.t.Repository, dn.t.Root.Digest)
	}
	if dn.rootEntry != "" {
		return dn.rootEntry, true
	}
	return dn.deny.Denied(dn.t.Registry, dn.t.Repository, n.Digest)
}

func deniedReason(entry string) string {
	return fmt.Sprintf("denied by the deny list entry %q", entry)
}

// partialError is a partial heal's error: errors.Is(err, errNotHealable).
type partialError struct{ msg string }

func (e partialError) Error() string { return e.msg }
func (e partialError) Unwrap() error { return errNotHealable }

// partial returns the error of a heal that left nodes out, or nil.
func partial(t Target, res *Result) error {
	switch {
	case res.Denied > 0 && res.Unhealable > 0:
		return partialError{fmt.Sprintf("heal %s: %d of %d nodes could not be restored and %d are denied by the deny list: partly healed",
			t, res.Unhealable, len(res.Nodes), res.Denied)}
	case res.Denied > 0:
		return partialError{fmt.Sprintf("heal %s: %d of %d nodes denied by the deny list, not pushed (%s): partly healed",
			t, res.Denied, len(res.Nodes), res.firstDenied())}
	case res.Unhealable > 0:
		return fmt.Errorf("heal %s: %d of %d nodes could not be restored: %w", t, res.Unhealable, len(res.Nodes), errNotHealable)
	}
	return nil
}

// firstDenied names the first denied node's reason.
func (r *Result) firstDenied() string {
	for _, n := range r.Nodes {
		if n.Status == StatusDenied {
			return n.Digest.String() + " " + n.Reason
		}
	}
	return ""
}
