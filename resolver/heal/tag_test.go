package heal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// tagFixture holds old (pushed, tagged v1 when tagged is set) and img
// (pushed by digest, held locally): BindTag points tags at img.
func tagFixture(t *testing.T, tagged bool) (f *healtest.Fixture, old, img *imagetest.Object) {
	t.Helper()
	f = healtest.New(t)
	old = imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	img = imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 128)
	tag := ""
	if tagged {
		tag = "v1"
	}
	imagetest.Push(t, f.Base, "app", tag, old)
	imagetest.Push(t, f.Base, "app", "", img)
	imagetest.WriteLocal(t, f.CS, f.Host, "app", img)
	f.Log.Reset()
	return f, old, img
}

func TestBindTagAbsentIsBound(t *testing.T) {
	f, _, img := tagFixture(t, false)
	b, err := f.Healer.BindTag(context.Background(), f.Target("app", img), "v1", false)
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	want := heal.TagBinding{Tag: "v1", Digest: img.Desc.Digest}
	if b != want {
		t.Errorf("binding = %+v, want %+v", b, want)
	}
	if got := imagetest.TagDigest(t, f.Base, "app", "v1"); got != img.Desc.Digest {
		t.Errorf("tag v1 = %q, want %s", got, img.Desc.Digest)
	}
}

func TestBindTagSameIsUnchanged(t *testing.T) {
	f, _, img := tagFixture(t, false)
	imagetest.PutManifest(t, f.Base, "app", "v1", img.Blob)
	f.Log.Reset()
	b, err := f.Healer.BindTag(context.Background(), f.Target("app", img), "v1", false)
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	want := heal.TagBinding{Tag: "v1", Digest: img.Desc.Digest, Previous: img.Desc.Digest, Unchanged: true}
	if b != want {
		t.Errorf("binding = %+v, want %+v", b, want)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("writes = %v, want none: the tag already names the root", w)
	}
}

func TestBindTagElsewhereIsRefused(t *testing.T) {
	f, old, img := tagFixture(t, true)
	_, err := f.Healer.BindTag(context.Background(), f.Target("app", img), "v1", false)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("bind = %v, want a failed precondition", err)
	}
	for _, s := range []string{"v1", old.Desc.Digest.String(), "--force-tag"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if got := imagetest.TagDigest(t, f.Base, "app", "v1"); got != old.Desc.Digest {
		t.Errorf("tag v1 = %q, want it left on %s", got, old.Desc.Digest)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("writes = %v, want none", w)
	}
}

func TestBindTagMoveReportsPrevious(t *testing.T) {
	f, old, img := tagFixture(t, true)
	b, err := f.Healer.BindTag(context.Background(), f.Target("app", img), "v1", true)
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	want := heal.TagBinding{Tag: "v1", Digest: img.Desc.Digest, Previous: old.Desc.Digest, Moved: true}
	if b != want {
		t.Errorf("binding = %+v, want %+v", b, want)
	}
	if got := imagetest.TagDigest(t, f.Base, "app", "v1"); got != img.Desc.Digest {
		t.Errorf("tag v1 = %q, want it moved to %s", got, img.Desc.Digest)
	}
}

func TestBindTagRefusesBadTag(t *testing.T) {
	f, _, img := tagFixture(t, false)
	for _, tag := range []string{"", "-x", "a/b", "v1@sha256", strings.Repeat("a", 129)} {
		_, err := f.Healer.BindTag(context.Background(), f.Target("app", img), tag, true)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("bind %q = %v, want invalid argument", tag, err)
		}
	}
	if reqs := f.Log.All(); len(reqs) != 0 {
		t.Errorf("requests = %v, want none for an invalid tag", reqs)
	}
}

// TestPreviewTagWritesNothing: PreviewTag says what BindTag would do (bind
// an absent tag, leave one on the root, refuse or move one elsewhere) and
// writes nothing.
func TestPreviewTagWritesNothing(t *testing.T) {
	f, old, img := tagFixture(t, true)
	imagetest.PutManifest(t, f.Base, "app", "same", img.Blob)
	f.Log.Reset()
	ctx, target := context.Background(), f.Target("app", img)

	if b, err := f.Healer.PreviewTag(ctx, target, "v2", false); err != nil || b != (heal.TagBinding{Tag: "v2", Digest: img.Desc.Digest}) {
		t.Errorf("preview absent = %+v, %v; want it bound to %s", b, err, img.Desc.Digest)
	}
	if b, err := f.Healer.PreviewTag(ctx, target, "same", false); err != nil || !b.Unchanged {
		t.Errorf("preview same = %+v, %v; want unchanged", b, err)
	}
	_, err := f.Healer.PreviewTag(ctx, target, "v1", false)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), old.Desc.Digest.String()) || !strings.Contains(err.Error(), "--force-tag") {
		t.Errorf("preview elsewhere = %v, want a refusal naming %s and --force-tag", err, old.Desc.Digest)
	}
	want := heal.TagBinding{Tag: "v1", Digest: img.Desc.Digest, Previous: old.Desc.Digest, Moved: true}
	if b, err := f.Healer.PreviewTag(ctx, target, "v1", true); err != nil || b != want {
		t.Errorf("preview move = %+v, %v; want %+v", b, err, want)
	}
	if w := f.Log.Writes(); len(w) != 0 {
		t.Errorf("writes = %v, want none", w)
	}
	if got := imagetest.TagDigest(t, f.Base, "app", "v1"); got != old.Desc.Digest {
		t.Errorf("tag v1 = %q, want it left on %s", got, old.Desc.Digest)
	}
}
