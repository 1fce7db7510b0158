package resolver_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// notFound is a registry that lost everything: what the wrapped resolver
// answers when the HealingResolver steps in.
type notFound struct{ remotes.Resolver }

func (notFound) Resolve(_ context.Context, ref string) (string, ocispec.Descriptor, error) {
	return "", ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, errdefs.ErrNotFound)
}

const digestRef = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// A reference regmend cannot parse is an invalid-argument error, never a
// panic (edge:5000/@sha256:... once sliced out of range).
func TestHealingResolverRefusesBadReferences(t *testing.T) {
	f := healtest.New(t)
	r := resolver.NewHealingResolver(notFound{}, f.Healer, content.Local{Store: f.CS, Blobs: f.CS})
	for _, ref := range []string{f.Host + "/" + digestRef, f.Host + digestRef, "/" + digestRef, "app" + digestRef, f.Host + "/a//b" + digestRef, ""} {
		_, _, err := r.Resolve(context.Background(), ref)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("Resolve(%q) = %v, want an invalid-argument error", ref, err)
		}
	}
}

// A tag never resolves to local content, even when the node holds what it
// once pointed at: the registry's NotFound stands.
func TestHealingResolverNeverResolvesTagsLocally(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	r := resolver.NewHealingResolver(notFound{}, f.Healer, content.Local{Store: f.CS, Blobs: f.CS})
	if _, _, err := r.Resolve(context.Background(), f.Host+"/app:v1"); !errdefs.IsNotFound(err) {
		t.Errorf("Resolve(tag) = %v, want the registry's NotFound", err)
	}
	_, desc, err := r.Resolve(context.Background(), f.Host+"/app@"+m1.Desc.Digest.String())
	if err != nil || desc.Digest != m1.Desc.Digest {
		t.Errorf("Resolve(digest) = %v, %v; want the local manifest", desc.Digest, err)
	}
}

// FuzzHealingResolverResolve feeds any reference to Resolve: it returns,
// without panicking, either the registry's NotFound or an invalid-argument
// error for what it cannot parse.
func FuzzHealingResolverResolve(f *testing.F) {
	fx := healtest.New(f)
	r := resolver.NewHealingResolver(notFound{}, fx.Healer, content.Local{Store: fx.CS, Blobs: fx.CS})
	for _, s := range []string{fx.Host + "/" + digestRef, fx.Host + "/app" + digestRef, fx.Host + "/app:v1", "edge:5000/@", "@", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		_, _, err := r.Resolve(context.Background(), ref)
		if err == nil || !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("Resolve(%q) = %v", ref, err)
		}
	})
}
