package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/source/sourcetest"
)

// heal --from --tag: bound, left, refused before any write, kept by the
// retention tag when the bind fails, previewed by a dry run; and -o json
// on a hard error.

// TestHealFromBindsTag: an image the registry never held is pushed whole
// from a layout and --tag binds it, with no retention tag; again, the tag
// is left as it is.
func TestHealFromBindsTag(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	fx := sourcetest.NewFixture(t, 128)
	img := fx.Image
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, img, "v1")
	dest := reg.Host + "/app"

	got, err := healFromJSON(t, reg, "--from", "oci:"+dir, "--tag", "v2", dest)
	if err != nil {
		t.Fatalf("heal: %v", err)
	}
	if want := (heal.TagBinding{Tag: "v2", Digest: img.Desc.Digest}); got.Tag == nil || *got.Tag != want {
		t.Errorf("tag = %+v, want %+v", got.Tag, want)
	}
	if got.Pushed != len(fx.Blobs()) || len(got.From) != 1 || got.From[0] != "oci:"+dir {
		t.Errorf("pushed %d from %v, want the whole image from oci:%s", got.Pushed, got.From, dir)
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", "v2"); d != img.Desc.Digest {
		t.Errorf("tag v2 = %q, want %s", d, img.Desc.Digest)
	}
	retention := heal.RetentionTag(img.Desc.Digest)
	if len(got.RetentionTags) != 0 || imagetest.TagDigest(t, reg.Base, "app", retention) != "" {
		t.Errorf("retention tags %v (%s bound: %v); want none with --tag", got.RetentionTags, retention, imagetest.TagDigest(t, reg.Base, "app", retention) != "")
	}

	reg.Log.Reset()
	got, err = healFromJSON(t, reg, "--from", "oci:"+dir, "--tag", "v2", dest)
	if err != nil {
		t.Fatalf("heal again: %v", err)
	}
	if want := (heal.TagBinding{Tag: "v2", Digest: img.Desc.Digest, Previous: img.Desc.Digest, Unchanged: true}); got.Tag == nil || *got.Tag != want {
		t.Errorf("tag = %+v, want %+v", got.Tag, want)
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("second heal wrote %v, want nothing", w)
	}
}

// TestHealFromTagRefusesToMove: a tag naming another image is refused,
// naming where it points and --force-tag, and stays; --force-tag moves it
// and says from where.
func TestHealFromTagRefusesToMove(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	old := sourcetest.NewFixture(t, 64).Image
	imagetest.Push(t, reg.Base, "app", "v1", old)
	img := sourcetest.NewFixture(t, 128).Image
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, img, "v1")
	spec, dest := "oci:"+dir+":v1", reg.Host+"/app"

	reg.Log.Reset()
	out, err := runCLI(t, reg, "heal", "--from", spec, "--tag", "v1", dest)
	if exitOf(err) != exitError || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("heal = %v (exit %d), want a refusal, exit 1\n%s", err, exitOf(err), out)
	}
	for _, s := range []string{old.Desc.Digest.String(), "--force-tag", ":v1"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", "v1"); d != old.Desc.Digest {
		t.Fatalf("tag v1 = %s, want it left on %s", d, old.Desc.Digest)
	}
	// Refused before anything is pushed: a root pushed and left untagged
	// (no retention tag with --tag) would be the next GC's.
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("a refused tag wrote %v, want nothing", w)
	}
	if imagetest.Has(t, reg.Base, "app", "manifests", img.Desc.Digest.String()) {
		t.Errorf("root %s pushed before the tag was refused", img.Desc.Digest)
	}

	out, err = runCLI(t, reg, "heal", "--from", spec, "--tag", "v1", "--force-tag", dest)
	if err != nil {
		t.Fatalf("heal --force-tag: %v\n%s", err, out)
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", "v1"); d != img.Desc.Digest {
		t.Errorf("tag v1 = %s, want it moved to %s", d, img.Desc.Digest)
	}
	want := "tag " + dest + ":v1 moved from " + old.Desc.Digest.String() + " to " + img.Desc.Digest.String()
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// TestHealFromTagFailureKeepsRoot: when binding --tag fails after the heal
// pushed a root the registry lacked, the root's retention tag is bound
// instead (retention is off for --tag), so the next GC keeps it, and the
// output and error say so.
func TestHealFromTagFailureKeepsRoot(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	img := sourcetest.NewFixture(t, 128).Image
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, img, "v1")
	dest := reg.Host + "/app"
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.URL.Path == "/v2/app/manifests/v1" {
			http.Error(w, `{"errors":[{"code":"DENIED","message":"tag writes refused"}]}`, http.StatusForbidden)
			return true
		}
		return false
	})

	got, err := healFromJSON(t, reg, "--from", "oci:"+dir, "--tag", "v1", dest)
	retention := heal.RetentionTag(img.Desc.Digest)
	if exitOf(err) != exitError || !strings.Contains(err.Error(), retention) {
		t.Fatalf("heal = %v (exit %d), want exit 1 naming retention tag %s", err, exitOf(err), retention)
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", retention); d != img.Desc.Digest {
		t.Errorf("retention tag %s = %q, want the pushed root %s", retention, d, img.Desc.Digest)
	}
	if got.Tag != nil || len(got.RetentionTags) != 1 || got.RetentionTags[0] != retention {
		t.Errorf("output: tag %+v, retention tags %v; want no tag and %s", got.Tag, got.RetentionTags, retention)
	}
	if d := imagetest.TagDigest(t, reg.Base, "app", "v1"); d != "" {
		t.Errorf("tag v1 = %s through a refused PUT", d)
	}
}

// TestHealFromJSONOnHardError: a heal that fails outright (the registry
// refuses the root manifest) still prints its result with -o json: what
// was pushed before the failure.
func TestHealFromJSONOnHardError(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	fx := sourcetest.NewFixture(t, 128)
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, fx.Image, "v1")
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.URL.Path == "/v2/app/manifests/"+fx.Image.Desc.Digest.String() {
			w.WriteHeader(http.StatusForbidden)
			return true
		}
		return false
	})
	got, err := healFromJSON(t, reg, "--from", "oci:"+dir, reg.Host+"/app")
	if exitOf(err) != exitError || !errdefs.IsPermissionDenied(err) {
		t.Fatalf("heal = %v (exit %d), want the refusal, exit 1", err, exitOf(err))
	}
	if got.Target.Root.Digest != fx.Image.Desc.Digest || got.Pushed != len(fx.Blobs())-1 {
		t.Errorf("result: root %s, %d pushed; want %s with all but the root (%d) pushed", got.Target.Root.Digest, got.Pushed, fx.Image.Desc.Digest, len(fx.Blobs())-1)
	}
}

// TestHealFromDryRunTag: heal --dry-run --tag says what it would do to the
// tag (bind it, leave it, refuse or move it), reading only.
func TestHealFromDryRunTag(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	old := sourcetest.NewFixture(t, 64).Image
	imagetest.Push(t, reg.Base, "app", "v1", old)
	img := sourcetest.NewFixture(t, 128).Image
	imagetest.Push(t, reg.Base, "app", "same", img)
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, img, "v1")
	spec, dest := "oci:"+dir+":v1", reg.Host+"/app"
	reg.Log.Reset()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tag", "v1"}, "tag " + dest + ":v1 points at " + old.Desc.Digest.String() + ": would be refused"},
		{[]string{"--tag", "v2"}, "tag " + dest + ":v2 would be bound to " + img.Desc.Digest.String()},
		{[]string{"--tag", "same"}, "tag " + dest + ":same already points at " + img.Desc.Digest.String()},
		{[]string{"--tag", "v1", "--force-tag"}, "tag " + dest + ":v1 would be moved from " + old.Desc.Digest.String() + " to " + img.Desc.Digest.String()},
	} {
		out, err := runCLI(t, reg, append(append([]string{"heal", "--dry-run", "--from", spec}, c.args...), dest)...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("dry run %v = %v, output lacks %q:\n%s", c.args, err, c.want, out)
		}
	}
	out, err := runCLI(t, reg, "heal", "--dry-run", "-o", "json", "--from", spec, "--tag", "v1", dest)
	var got []struct {
		DryRun bool `json:"dryRun"`
		Tag    *struct {
			Digest  string `json:"digest"`
			Refused string `json:"refused"`
		} `json:"tag"`
	}
	if jerr := json.Unmarshal([]byte(out), &got); err != nil || jerr != nil || len(got) != 1 {
		t.Fatalf("dry run -o json = %v, %v:\n%s", err, jerr, out)
	}
	if tg := got[0].Tag; !got[0].DryRun || tg == nil || tg.Digest != old.Desc.Digest.String() || !strings.Contains(tg.Refused, "--force-tag") {
		t.Errorf("dry run JSON tag = %+v, want refused, pointing at %s", tg, old.Desc.Digest)
	}
	if w := reg.Log.Writes(); len(w) != 0 {
		t.Errorf("dry runs wrote %v", w)
	}
}
