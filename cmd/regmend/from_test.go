package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/source/sourcetest"
)

// Every --from run names a containerd socket that does not exist: a
// command that dialled it would fail.
const noContainerd = "/nonexistent/containerd.sock"

// runCLI runs regmend with args against reg's hosts.toml and returns what
// it wrote to stdout.
func runCLI(t *testing.T, reg *imagetest.Registry, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := app()
	cmd.Writer, cmd.ErrWriter = &out, &bytes.Buffer{}
	err := cmd.Run(context.Background(), append([]string{"regmend", "-a", noContainerd, "--hosts-dir", reg.HostsDir}, args...))
	return out.String(), err
}

// exitOf is the process's exit status for err, as main sets it.
func exitOf(err error) int {
	var ec *exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.code
	}
	return exitError
}

// danglingChild pushes a two-platform index tagged v1 to reg, deletes its
// amd64 child manifest there (a GC's work) and writes the whole image into
// a layout, named v1. It returns the layout's --from value.
func danglingChild(t *testing.T, reg *imagetest.Registry) (spec string, idx *imagetest.Object) {
	t.Helper()
	idx = sourcetest.NewFixture(t, 256).Image
	imagetest.Push(t, reg.Base, "app", "v1", idx)
	imagetest.Delete(t, reg.Base, "app", "manifests", idx.Children[0].Desc.Digest)
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, idx, "v1")
	reg.Log.Reset()
	return "oci:" + dir + ":v1", idx
}

func TestHealFromLayoutRestoresDanglingChild(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	spec, idx := danglingChild(t, reg)
	child := idx.Children[0]

	out, err := runCLI(t, reg, "heal", "--from", spec, reg.Host+"/app")
	if err != nil {
		t.Fatalf("heal: %v\n%s", err, out)
	}
	if !imagetest.Has(t, reg.Base, "app", "manifests", child.Desc.Digest.String()) {
		t.Fatal("child manifest not restored")
	}
	var writes []string
	for _, r := range reg.Log.Writes() {
		writes = append(writes, r.Method+" "+r.Path)
	}
	if want := "PUT /v2/app/manifests/" + child.Desc.Digest.String(); len(writes) != 1 || writes[0] != want {
		t.Errorf("writes = %q, want only %q", writes, want)
	}
	for _, s := range []string{"reading from " + spec, "healed " + reg.Host + "/app@" + idx.Desc.Digest.String(), "1 pushed"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if got := imagetest.TagDigest(t, reg.Base, "app", "v1"); got != idx.Desc.Digest {
		t.Errorf("tag v1 = %s, want it still on the index %s", got, idx.Desc.Digest)
	}
}

// healJSON is what heal --from -o json prints, as far as the tests read it.
type healJSON struct {
	Target        heal.Target      `json:"target"`
	Pushed        int              `json:"pushed"`
	From          []string         `json:"from"`
	RetentionTags []string         `json:"retentionTags"`
	Tag           *heal.TagBinding `json:"tag"`
}

func healFromJSON(t *testing.T, reg *imagetest.Registry, args ...string) (healJSON, error) {
	t.Helper()
	out, err := runCLI(t, reg, append([]string{"heal", "-o", "json"}, args...)...)
	var got []healJSON
	if jerr := json.Unmarshal([]byte(out), &got); jerr != nil || len(got) != 1 {
		t.Fatalf("output is not one JSON result (%v; heal: %v):\n%s", jerr, err, out)
	}
	return got[0], err
}

// TestCheckFromListsMissing: check --from names the child the registry
// lost, as healable, and writes nothing.
func TestCheckFromListsMissing(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	spec, idx := danglingChild(t, reg)
	child := idx.Children[0]

	out, err := runCLI(t, reg, "check", "-o", "json", "--from", spec, reg.Host+"/app")
	if exitOf(err) != exitDamaged {
		t.Fatalf("check = %v (exit %d), want exit 3\n%s", err, exitOf(err), out)
	}
	var rep heal.CheckReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not a check report: %v\n%s", err, out)
	}
	if len(rep.Images) != 1 {
		t.Fatalf("%d images, want 1:\n%s", len(rep.Images), out)
	}
	img := rep.Images[0]
	if img.Image != reg.Host+"/app@"+idx.Desc.Digest.String() || img.State != heal.StateHealable {
		t.Errorf("image %s %s, want %s/app@%s healable", img.Image, img.State, reg.Host, idx.Desc.Digest)
	}
	if len(img.Missing) != 1 || img.Missing[0].Digest != child.Desc.Digest {
		t.Errorf("missing = %+v, want only the child %s", img.Missing, child.Desc.Digest)
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("check wrote %v, want nothing", w)
	}
	if imagetest.Has(t, reg.Base, "app", "manifests", child.Desc.Digest.String()) {
		t.Error("check restored the child")
	}

	table, err := runCLI(t, reg, "check", "--from", spec, reg.Host+"/app")
	if exitOf(err) != exitDamaged || !strings.Contains(table, "missing") || !strings.Contains(table, child.Desc.Digest.String()) {
		t.Errorf("check table (exit %d) does not list the missing child %s:\n%s", exitOf(err), child.Desc.Digest, table)
	}

	// --fix heals from the source as heal --from does.
	if out, err := runCLI(t, reg, "check", "--fix", "--from", spec, reg.Host+"/app"); err != nil || !strings.Contains(out, "healed") {
		t.Fatalf("check --fix = %v:\n%s", err, out)
	}
	if !imagetest.Has(t, reg.Base, "app", "manifests", child.Desc.Digest.String()) {
		t.Error("check --fix did not restore the child")
	}
}

// TestFromUsageErrors: a bad --from, destination or tag exits 2 naming it,
// before anything is written.
func TestFromUsageErrors(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	spec, _ := danglingChild(t, reg)
	dest := reg.Host + "/app"
	missing := filepath.Join(t.TempDir(), "nolayout")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"heal", "--from", "nonsense", dest}, `"nonsense"`},
		{[]string{"heal", "--from", "http://x/app", dest}, "http://x/app"},
		{[]string{"heal", "--from", "oci:" + missing, dest}, missing},
		{[]string{"check", "--from", "nonsense", dest}, `"nonsense"`},
		{[]string{"heal", "--from", spec, dest + ":v1"}, "--tag"},
		{[]string{"heal", "--from", spec, dest + "@sha256:" + strings.Repeat("a", 64)}, "--tag"},
		{[]string{"check", "--from", spec, dest + ":v1"}, "--tag"},
		{[]string{"check", "--from", spec, dest, dest}, "one destination"},
		{[]string{"check", "--from", spec}, "one destination"},
		{[]string{"heal", "--tag", "v1", dest + ":v1"}, "--tag goes with --from"},
		{[]string{"heal", "--from", spec, "--force-tag", dest}, "--force-tag goes with --tag"},
		{[]string{"heal", "--from", spec, "--tag", "-bad", dest}, `"-bad"`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, err := runCLI(t, reg, c.args...)
			if exitOf(err) != exitUsage || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v (exit %d), want exit 2 naming %q", err, exitOf(err), c.want)
			}
		})
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("usage errors wrote %v", w)
	}
}

// TestHealFromSeveralSources: each blob is read from the first --from that
// holds it, and the root is the first one's that resolves: a layout
// lacking a layer heals partly alone (exit 3, the layer listed), and
// whole with a second layout that holds it.
func TestHealFromSeveralSources(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	fx := sourcetest.NewFixture(t, 128)
	img, layer := fx.Image, fx.Layer()
	partial, whole, decoy := filepath.Join(t.TempDir(), "partial"), filepath.Join(t.TempDir(), "whole"), filepath.Join(t.TempDir(), "decoy")
	sourcetest.WriteLayout(t, partial, img, "v1", layer.Desc.Digest)
	sourcetest.WriteLayout(t, whole, img, "v1")
	// decoy holds another image as v1: listed second, it must not decide
	// the root.
	sourcetest.WriteLayout(t, decoy, sourcetest.NewFixture(t, 64).Image, "v1")
	dest := reg.Host + "/app"

	out, err := runCLI(t, reg, "heal", "--from", "oci:"+partial+":v1", "--tag", "v1", dest)
	if exitOf(err) != exitDamaged || !strings.Contains(out, layer.Desc.Digest.String()) || !strings.Contains(err.Error(), "tag v1 not bound") {
		t.Fatalf("heal from the partial layout = %v (exit %d), want exit 3 listing layer %s, tag not bound:\n%s", err, exitOf(err), layer.Desc.Digest, out)
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", "v1"); d != "" {
		t.Errorf("tag v1 bound to %s by a partial heal", d)
	}

	out, err = runCLI(t, reg, "heal", "--from", "oci:"+partial+":v1", "--from", "oci:"+decoy+":v1", "--from", "oci:"+whole+":v1", "--tag", "v1", dest)
	if err != nil {
		t.Fatalf("heal from three layouts: %v\n%s", err, out)
	}
	assertWhole(t, reg, "app", fx)
	if d := imagetest.TagDigest(t, reg.Base, "app", "v1"); d != img.Desc.Digest {
		t.Errorf("tag v1 = %q, want the first layout's root %s", d, img.Desc.Digest)
	}
}

// TestHealFromNamedSourceChoosesRoot: when one --from names an image, a
// layout named by no reference only lends blobs: its only image is not the
// root. A source that fails (credentials refused) stops the choice of root
// rather than handing it to the next source: exit 1, nothing written.
func TestHealFromNamedSourceChoosesRoot(t *testing.T) {
	reg, up := imagetest.NewRegistry(t), imagetest.NewRegistry(t)
	other, want := sourcetest.NewFixture(t, 64).Image, sourcetest.NewFixture(t, 128).Image
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	sourcetest.WriteLayout(t, a, other, "")
	sourcetest.WriteLayout(t, b, want, "v1")
	dest := reg.Host + "/app"

	got, err := healFromJSON(t, reg, "--from", "oci:"+a, "--from", "oci:"+b+":v1", dest)
	if err != nil {
		t.Fatalf("heal: %v", err)
	}
	if got.Target.Root.Digest != want.Desc.Digest {
		t.Errorf("root = %s, want b's v1 %s, not a's only image %s", got.Target.Root.Digest, want.Desc.Digest, other.Desc.Digest)
	}
	if imagetest.Has(t, reg.Base, "app", "manifests", other.Desc.Digest.String()) {
		t.Errorf("a's image %s was pushed", other.Desc.Digest)
	}

	imagetest.WriteHostsTOML(t, reg.HostsDir, up.Host, fmt.Sprintf("server = %q\n", up.Base))
	up.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	reg.Log.Reset()
	out, err := runCLI(t, reg, "heal", "--from", up.Host+"/app:v2", "--from", "oci:"+b+":v1", reg.Host+"/other")
	if exitOf(err) != exitError || !strings.Contains(err.Error(), up.Host+"/app:v2") {
		t.Errorf("heal with the first source refusing = %v (exit %d), want exit 1 naming it\n%s", err, exitOf(err), out)
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("the root was chosen past a failing source: writes %v", w)
	}
}

// TestHealFromRegistry: --from another registry's REPO:TAG copies the
// image into the destination, reading the source only, and --tag binds it.
func TestHealFromRegistry(t *testing.T) {
	edge, up := imagetest.NewRegistry(t), imagetest.NewRegistry(t)
	fx := sourcetest.NewFixture(t, 128)
	imagetest.Push(t, up.Base, "team/app", "v1", fx.Image)
	imagetest.WriteHostsTOML(t, edge.HostsDir, up.Host, fmt.Sprintf("server = %q\n", up.Base))
	up.Log.Reset()

	out, err := runCLI(t, edge, "heal", "--from", up.Host+"/team/app:v1", "--tag", "v1", edge.Host+"/app")
	if err != nil {
		t.Fatalf("heal: %v\n%s", err, out)
	}
	if d := imagetest.TagDigest(t, edge.Base, "app", "v1"); d != fx.Image.Desc.Digest {
		t.Errorf("edge app:v1 = %q, want %s", d, fx.Image.Desc.Digest)
	}
	assertWhole(t, edge, "app", fx)
	if w := up.Log.Writes(); len(w) != 0 {
		t.Errorf("the source registry got writes %v", w)
	}
}

// assertWhole fails the test for each blob of fx that reg lacks in repo.
func assertWhole(t *testing.T, reg *imagetest.Registry, repo string, fx *sourcetest.Fixture) {
	t.Helper()
	for _, b := range fx.Blobs() {
		kind := "blobs"
		if b.Desc.MediaType == ocispec.MediaTypeImageIndex || b.Desc.MediaType == ocispec.MediaTypeImageManifest {
			kind = "manifests"
		}
		if !imagetest.Has(t, reg.Base, repo, kind, b.Desc.Digest.String()) {
			t.Errorf("%s %s not in %s", kind, b.Desc.Digest, repo)
		}
	}
}
