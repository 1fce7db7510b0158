package heal

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/registry"
)

// Retention is what a heal binds to an orphan root it re-pushed.
type Retention string

// Retention modes.
const (
	// RetainTag binds RetentionTag(digest), so the next garbage collection
	// of untagged manifests keeps the orphan.
	RetainTag Retention = "tag"
	// RetainNone binds nothing: the next such GC deletes the orphan again.
	RetainNone Retention = "none"
)

// ParseRetention reads a retention mode: "tag" or "none".
func ParseRetention(s string) (Retention, error) {
	switch r := Retention(s); r {
	case RetainTag, RetainNone:
		return r, nil
	}
	return "", fmt.Errorf("retention %q: want %s or %s: %w", s, RetainTag, RetainNone, errdefs.ErrInvalidArgument)
}

// retentionSuffix marks tags regmend owns. Such a tag only ever points at
// the manifest whose digest it names.
const retentionSuffix = ".regmend"

// maxTagLength is the distribution spec's limit on a tag.
const maxTagLength = 128

// RetentionTag is the tag that keeps a re-pushed orphan from the next
// garbage collection of untagged manifests: "sha256-<hex>.regmend".
func RetentionTag(d digest.Digest) string {
	enc := d.Encoded()
	if room := maxTagLength - len(d.Algorithm().String()) - 1 - len(retentionSuffix); len(enc) > room {
		enc = enc[:room]
	}
	return d.Algorithm().String() + "-" + enc + retentionSuffix
}

// retain binds retention tags after a heal. The root gets one when the
// registry had lost it (an orphan). When the root itself could not be
// restored, each pushed manifest whose parents are all still missing gets
// one, so what this node uses survives. A child of a present index needs
// none: the tagged index keeps it.
func (h *Healer) retain(ctx context.Context, sess *registry.Session, plan *Plan, res *Result) error {
	if h.retention != RetainTag || !res.RootWasMissing {
		return nil
	}
	for _, n := range anchors(plan, res) {
		tag := RetentionTag(n.Digest)
		// A retention tag names the digest it keeps: one pointing
		// elsewhere is never moved (tag.go).
		if _, err := h.bindTag(ctx, sess, plan.Target, tag, n.Descriptor, false, "retention tag", "regmend never moves a tag"); err != nil {
			return err
		}
		res.RetentionTags = append(res.RetentionTags, tag)
	}
	return nil
}

func anchors(plan *Plan, res *Result) []*content.Node {
	root := plan.Closure.Root
	if s := res.status(plan, root.Digest); s != StatusUnhealable && s != StatusMissing && s != StatusDenied {
		return []*content.Node{root}
	}
	parents := map[digest.Digest][]digest.Digest{}
	for _, n := range plan.Closure.Nodes() {
		for _, c := range n.Children {
			parents[c.Digest] = append(parents[c.Digest], n.Digest)
		}
	}
	var out []*content.Node
	for _, n := range plan.Closure.Nodes() {
		if !n.Kind.IsManifest() || res.status(plan, n.Digest) != StatusPushed {
			continue
		}
		kept := false
		for _, p := range parents[n.Digest] {
			if s := res.status(plan, p); s == StatusPresent || s == StatusPushed {
				kept = true
			}
		}
		if !kept {
			out = append(out, n)
		}
	}
	return out
}
