package publish

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/resolver/heal"
)

// WriteIndex pushes ii and everything it references to ref's repository,
// as remote.WriteIndex does, and also restores what the registry lost
// under an index it still holds: each child index, image manifest, config
// and layer is asked about (leaves first), and what is missing is pushed,
// children before the indexes that name them. Then, when ref is a tag, the
// tag is pointed at ii, moved from wherever it pointed, like
// remote.WriteIndex. When ref is a digest it must be ii's, and no tag is
// bound.
func WriteIndex(ref name.Reference, ii v1.ImageIndex, opts ...Option) error {
	if ii == nil {
		return fmt.Errorf("publish %s: nil image index: %w", refString(ref), errdefs.ErrInvalidArgument)
	}
	s, root, err := indexStore(ii)
	if err != nil {
		return fmt.Errorf("publish %s: %w", refString(ref), err)
	}
	return write(ref, s, root, opts)
}

// Write pushes img (its manifest, config and layers) to ref's repository,
// as remote.Write does, restoring a config or layer the registry lost
// under a manifest it still holds; a tag ref is then pointed at img, moved
// like remote.Write moves it.
func Write(ref name.Reference, img v1.Image, opts ...Option) error {
	if img == nil {
		return fmt.Errorf("publish %s: nil image: %w", refString(ref), errdefs.ErrInvalidArgument)
	}
	s, root, err := imageStore(img)
	if err != nil {
		return fmt.Errorf("publish %s: %w", refString(ref), err)
	}
	return write(ref, s, root, opts)
}

func write(ref name.Reference, s *store, root ocispec.Descriptor, opts []Option) error {
	if ref == nil {
		return fmt.Errorf("publish: nil reference: %w", errdefs.ErrInvalidArgument)
	}
	o, err := makeOptions(opts)
	if err != nil {
		return err
	}
	var tag string
	switch r := ref.(type) {
	case name.Tag:
		tag = r.TagStr()
	case name.Digest:
		if r.DigestStr() != root.Digest.String() {
			return fmt.Errorf("publish %s: the content's digest is %s: %w", ref, root.Digest, errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("publish %s: a %T is neither a tag nor a digest: %w", ref, ref, errdefs.ErrInvalidArgument)
	}
	remote, err := newRemote(ref.Context(), o)
	if err != nil {
		return fmt.Errorf("publish %s: %w", ref, err)
	}
	hopts := []heal.HealerOption{heal.WithDeepCheck(o.deep)}
	if o.jobs > 0 {
		hopts = append(hopts, heal.WithConcurrency(o.jobs), heal.WithUploads(o.jobs))
	}
	if tag != "" {
		// The tag bound below keeps the root from GC; a retention tag
		// would be a second one the publisher never asked for.
		hopts = append(hopts, heal.WithRetention(heal.RetainNone))
	}
	h, err := heal.NewHealer(s, remote, hopts...)
	if err != nil {
		return fmt.Errorf("publish %s: %w", ref, err)
	}
	t := heal.Target{Registry: ref.Context().RegistryStr(), Repository: ref.Context().RepositoryStr(), Root: root}
	res, err := h.Heal(o.ctx, t)
	if err != nil {
		return fmt.Errorf("publish %s: %w", ref, err)
	}
	if tag == "" {
		return nil
	}
	// A publish moves its tag: that is the publisher's intent, as with
	// remote.WriteIndex.
	if _, err := h.BindTag(o.ctx, t, tag, true); err != nil {
		err = fmt.Errorf("publish %s: tag %s: %w", ref, tag, err)
		// A root pushed for the tag, which is not bound: the retention
		// tag keeps it from the next GC instead.
		rt, rerr := h.KeepRoot(o.ctx, t, res)
		switch {
		case rerr != nil:
			return errors.Join(err, fmt.Errorf("publish %s: %w", ref, rerr))
		case rt == "":
			return err
		}
		return fmt.Errorf("%w; retention tag %s bound so the next garbage collection keeps %s", err, rt, root.Digest)
	}
	return nil
}

// refString names ref in an error, nil included.
func refString(ref name.Reference) string {
	if ref == nil {
		return "<nil reference>"
	}
	return ref.String()
}
