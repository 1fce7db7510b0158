package heal

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/resolver/registry"
)

// TagBinding reports what BindTag did to a tag.
type TagBinding struct {
	Tag    string        `json:"tag"`
	Digest digest.Digest `json:"digest"` // what the tag points at now
	// Previous is where the tag pointed before; "" when it was absent.
	Previous digest.Digest `json:"previous,omitempty"`
	// Moved: the tag pointed elsewhere and was moved (move was set).
	Moved bool `json:"moved,omitempty"`
	// Unchanged: the tag already pointed at the root; nothing was written.
	Unchanged bool `json:"unchanged,omitempty"`
}

// BindTag points tag at t.Root in t's repository, putting the root
// manifest (read from the Healer's store) under the tag. A tag already on
// the root is left alone, with nothing written. A tag pointing elsewhere is
// refused with an error errdefs.IsFailedPrecondition recognises, naming
// where it points, unless move is set: then it is moved and the binding
// reports Moved and Previous. The root's closure must already be in the
// registry (heal it first): the registry refuses a manifest whose children
// it lacks.
func (h *Healer) BindTag(ctx context.Context, t Target, tag string, move bool) (TagBinding, error) {
	if err := imageref.ValidateTag(tag); err != nil {
		return TagBinding{}, err
	}
	sess, err := h.remote.Session(ctx, t.Registry, t.Repository)
	if err != nil {
		return TagBinding{}, err
	}
	return h.bindTag(ctx, sess, t, tag, t.Root, move, "tag", "--force-tag moves it")
}

// KeepRoot binds t's retention tag when res, a heal of t, pushed the root
// (the registry lacked it) and bound no retention tag: for a caller whose
// own tag was to keep the root and could not be bound, so the next garbage
// collection does not take it. It returns the tag bound, or "" when none
// was needed.
func (h *Healer) KeepRoot(ctx context.Context, t Target, res *Result) (string, error) {
	if !res.RootWasMissing || len(res.RetentionTags) > 0 || !rootPushed(res, t) {
		return "", nil
	}
	rt := RetentionTag(t.Root.Digest)
	if _, err := h.BindTag(ctx, t, rt, false); err != nil {
		return "", fmt.Errorf("the root %s was pushed untagged and the next garbage collection may delete it: %w", t.Root.Digest, err)
	}
	res.RetentionTags = append(res.RetentionTags, rt)
	return rt, nil
}

// rootPushed reports whether res pushed t's root.
func rootPushed(res *Result, t Target) bool {
	for _, n := range res.Nodes {
		if n.Digest == t.Root.Digest {
			return n.Status == StatusPushed
		}
	}
	return false
}

// PreviewTag reports what BindTag would do, writing nothing: the binding
// it would report (Unchanged, Moved with Previous, or a new tag) or the
// same refusal, so a caller can refuse before it pushes anything.
func (h *Healer) PreviewTag(ctx context.Context, t Target, tag string, move bool) (TagBinding, error) {
	if err := imageref.ValidateTag(tag); err != nil {
		return TagBinding{}, err
	}
	sess, err := h.remote.Session(ctx, t.Registry, t.Repository)
	if err != nil {
		return TagBinding{}, err
	}
	b, _, err := previewTag(ctx, sess, tag, t.Root, move, "tag", "--force-tag moves it")
	if err == nil && b.Previous != "" && !b.Unchanged {
		b.Moved = true
	}
	return b, err
}

// previewTag reads where tag points (found: it exists) and says what
// binding it to desc would do. what names the tag in errors ("retention
// tag"); refusal says, when the tag points elsewhere and move is unset,
// what the user can do about it.
func previewTag(ctx context.Context, sess *registry.Session, tag string, desc ocispec.Descriptor, move bool, what, refusal string) (b TagBinding, found bool, err error) {
	b = TagBinding{Tag: tag, Digest: desc.Digest}
	cur, ok, err := sess.TagDigest(ctx, tag)
	if err != nil {
		return b, false, fmt.Errorf("%s %s: %w", what, tag, err)
	}
	if ok {
		b.Previous = cur
		if cur == desc.Digest {
			b.Unchanged = true
			return b, true, nil
		}
		if !move {
			b.Digest = cur
			return b, true, fmt.Errorf("%s %s points at %s, not %s; %s: %w", what, sess.Ref(":"+tag), cur, desc.Digest, refusal, errdefs.ErrFailedPrecondition)
		}
	}
	return b, ok, nil
}

// bindTag points tag at desc, in t's closure, as previewTag says. A tag
// PUT pushes the manifest: one the deny list names now is refused, as a
// denied root is.
func (h *Healer) bindTag(ctx context.Context, sess *registry.Session, t Target, tag string, desc ocispec.Descriptor, move bool, what, refusal string) (TagBinding, error) {
	if entry, ok := h.deniedNow(t, desc.Digest); ok { // deny.go
		return TagBinding{Tag: tag}, fmt.Errorf("%s %s: %s: %w", what, sess.Ref(":"+tag), deniedReason(entry), errDenied)
	}
	b, ok, err := previewTag(ctx, sess, tag, desc, move, what, refusal)
	if err != nil || b.Unchanged {
		return b, err
	}
	cur := b.Previous
	doc, err := content.ReadDocument(ctx, h.store, desc)
	if err != nil {
		return b, fmt.Errorf("%s %s: %w", what, tag, err)
	}
	// The HEAD above found where the tag points: put it without asking
	// again.
	err = sess.Retry(ctx, func() error {
		return sess.PutManifest(ctx, tag, desc, func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(doc)), nil
		})
	})
	if err != nil {
		if ok {
			b.Digest = cur
		} else {
			b.Digest = ""
		}
		return b, fmt.Errorf("bind %s %s to %s: %w", what, tag, desc.Digest, err)
	}
	b.Moved = ok
	log.G(ctx).WithField("tag", tag).WithField("previous", b.Previous).Debug("bound " + what)
	return b, nil
}
