package resolver_test

import (
	"context"
	"fmt"
	"io"
	"strings"
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

func (notFound) Fetcher(context.Context, string) (remotes.Fetcher, error) {
	return remotes.FetcherFunc(func(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
		return nil, fmt.Errorf("%s: %w", desc.Digest, errdefs.ErrNotFound)
	}), nil
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

// TestHealingResolverNeverPushesContentFromAnotherRepository: a manifest
// the node pulled from private/secret only, asked for as public/app, is
// neither healed into public/app (with the node's credentials, its blobs
// mounted across from private/secret) nor served from the local store:
// the registry's NotFound stands, saying why.
func TestHealingResolverNeverPushesContentFromAnotherRepository(t *testing.T) {
	f := healtest.New(t)
	m := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 2, 256)
	imagetest.WriteLocal(t, f.CS, f.Host, "private/secret", m)
	r := resolver.NewHealingResolver(notFound{}, f.Healer, content.Local{Store: f.CS, Blobs: f.CS})

	ref := f.Host + "/public/app@" + m.Desc.Digest.String()
	_, desc, err := r.Resolve(context.Background(), ref)
	if !errdefs.IsNotFound(err) {
		t.Errorf("Resolve(%s) = %v, %v; want NotFound", ref, desc.Digest, err)
	} else if want := "did not come from " + f.Host + "/public/app"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("the resolver wrote to the registry: %v", w)
	}
	for _, b := range m.Blobs() {
		if f.Has(t, "public/app", kindOf(m, b), b) {
			t.Errorf("%s reached public/app", b.Desc.Digest)
		}
	}
	fetcher, err := r.Fetcher(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := fetcher.Fetch(context.Background(), m.Layers[0].Desc); !errdefs.IsNotFound(err) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Fetch of a private/secret layer as public/app = %v; want the registry's NotFound", err)
	}

	// The same content asked for where it came from is healed.
	if _, _, err := r.Resolve(context.Background(), f.Host+"/private/secret@"+m.Desc.Digest.String()); err != nil {
		t.Fatalf("Resolve in the repository it came from: %v", err)
	}
	f.AssertWhole(t, "private/secret", m)
}

func kindOf(m *imagetest.Object, b imagetest.Blob) string {
	if b.Desc.Digest == m.Desc.Digest {
		return "manifests"
	}
	return "blobs"
}
