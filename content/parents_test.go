package content_test

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
)

// TestRootsRefusesContentFromAnotherRepository: a manifest the node pulled
// from private/secret only, asked for as public/app, is no root there: a
// heal would push it into public/app with the node's credentials (and
// mount its blobs across from private/secret). Roots answers NotFound and
// says why, whether the digest has parents or not.
func TestRootsRefusesContentFromAnotherRepository(t *testing.T) {
	cs, _ := imagetest.LocalStore(t)
	secret := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 16)
	imagetest.WriteLocal(t, cs, "edge:5000", "private/secret", secret)
	idx := imagetest.Index(t, imagetest.OCI, imagetest.Manifest(t, imagetest.OCI, amd64, 1, 16))
	imagetest.WriteLocal(t, cs, "edge:5000", "private/secret", idx)
	local := content.Local{Store: cs, Blobs: cs}

	const only = "containerd recorded it from private/secret only"
	for _, c := range []struct {
		name, registry, repo string
		d                    digest.Digest
		why                  string
	}{
		{"manifest labelled private/secret only", "edge:5000", "public/app", secret.Desc.Digest, only},
		{"its layer", "edge:5000", "public/app", secret.Layers[0].Desc.Digest, only},
		{"an index's child", "edge:5000", "public/app", idx.Children[0].Desc.Digest, only},
		{"the index", "edge:5000", "public/app", idx.Desc.Digest, only},
		{"another registry", "other:5000", "private/secret", secret.Desc.Digest, "containerd recorded no pull of it from other:5000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			roots, err := local.Roots(ctx, c.registry, c.repo, c.d)
			if !errdefs.IsNotFound(err) {
				t.Fatalf("Roots(%s in %s/%s) = %v, %v; want NotFound", c.d, c.registry, c.repo, roots, err)
			}
			for _, want := range []string{c.d.String(), "did not come from " + c.registry + "/" + c.repo, c.why} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	roots, err := local.Roots(ctx, "edge:5000", "private/secret", secret.Desc.Digest)
	if err != nil || len(roots) != 1 || roots[0].Digest != secret.Desc.Digest {
		t.Errorf("Roots in the repository it came from = %v, %v; want the manifest", roots, err)
	}
}
