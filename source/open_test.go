package source_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
	"github.com/regmend/regmend/source/sourcetest"
)

// TestOpenLayoutSpecs: oci:DIR[:NAME|@DIGEST], with ':' and '@' in DIR
// read as the disk says.
func TestOpenLayoutSpecs(t *testing.T) {
	f := sourcetest.NewFixture(t, 64)
	base := t.TempDir()
	plain := filepath.Join(base, "plain")
	colon := filepath.Join(base, "with:colon@at")
	sourcetest.WriteLayout(t, plain, f.Image, f.Name)
	sourcetest.WriteLayout(t, colon, f.Image, "edge:5000/app:v1")
	dgst := f.Image.Desc.Digest.String()
	for _, c := range []struct{ spec, dir, ref string }{
		{"oci:" + plain, plain, ""},
		{"oci:" + plain + ":v1", plain, "v1"},
		{"oci:" + plain + "@" + dgst, plain, dgst},
		{"oci:" + colon, colon, ""},
		{"oci:" + colon + ":edge:5000/app:v1", colon, "edge:5000/app:v1"},
		{"oci:" + colon + "@" + dgst, colon, dgst},
	} {
		src, ref, err := source.Open(t.Context(), c.spec, nil)
		if err != nil {
			t.Errorf("Open(%q): %v", c.spec, err)
			continue
		}
		if src.String() != "oci:"+c.dir || ref != c.ref {
			t.Errorf("Open(%q) = %s, %q; want oci:%s, %q", c.spec, src, ref, c.dir, c.ref)
		}
		if d, err := src.Resolve(t.Context(), ref); err != nil || d.Digest != f.Image.Desc.Digest {
			t.Errorf("Open(%q).Resolve(%q) = %s, %v", c.spec, ref, d.Digest, err)
		}
	}
	if _, _, err := source.Open(t.Context(), "oci:"+filepath.Join(base, "absent")+":v1", nil); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "oci-layout") {
		t.Errorf("Open(absent layout) = %v, want not found naming oci-layout", err)
	}
}

// TestOpenRegistrySpecs: REGISTRY/REPO[:TAG|@DIGEST] through the registry
// client; anything else is refused naming the spec and the forms.
func TestOpenRegistrySpecs(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	remote, err := registry.NewRemote(registry.WithHostsDir(reg.HostsDir))
	if err != nil {
		t.Fatal(err)
	}
	d := "sha256:" + strings.Repeat("a", 64)
	for _, c := range []struct{ spec, name, ref string }{
		{reg.Host + "/app", reg.Host + "/app", ""},
		{reg.Host + "/team/app:v1", reg.Host + "/team/app", "v1"},
		{reg.Host + "/app@" + d, reg.Host + "/app", d},
		{reg.Host + "/app:v1@" + d, reg.Host + "/app", d},
	} {
		src, ref, err := source.Open(t.Context(), c.spec, remote)
		if err != nil || src.String() != c.name || ref != c.ref {
			t.Errorf("Open(%q) = %v, %q, %v; want %s, %q", c.spec, src, ref, err, c.name, c.ref)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"", "app:v1", "docker/app", "http://edge:5000/app", "edge:5000/App", dir, "oci:"} {
		_, _, err := source.Open(t.Context(), spec, remote)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "oci:DIR") || !strings.Contains(err.Error(), "REGISTRY/REPO") {
			t.Errorf("Open(%q) = %v, want invalid argument naming the forms", spec, err)
		}
	}
}
