package source_test

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/source"
	"github.com/regmend/regmend/source/sourcetest"
)

// TestListKeepsFailures: a source that fails (a registry answering 500)
// does not hide content a later source holds, and is what the list
// reports for content no source holds, not absence; it stops Resolve (the
// root is never a later source's by default); a source that answers first
// leaves the later ones unasked.
func TestListKeepsFailures(t *testing.T) {
	f := sourcetest.NewFixture(t, 1024)
	reg, broken := registrySource(t, f)
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusInternalServerError)
		return true
	})
	dir := filepath.Join(t.TempDir(), "layout")
	sourcetest.WriteLayout(t, dir, f.Image, f.Name)
	layout, err := source.Layout(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := sourcetest.Context(t)
	l := source.List(broken, layout)
	layer := f.Layer()
	if info, err := l.Info(ctx, layer.Desc.Digest); err != nil || info.Size != layer.Desc.Size {
		t.Errorf("Info past a failing source = %v, %v", info.Size, err)
	}
	ra, err := l.ReaderAt(ctx, layer.Desc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	ra.Close()
	if err != nil || string(b) != string(layer.Data) {
		t.Errorf("ReaderAt past a failing source: %d bytes, %v", len(b), err)
	}
	// The root is not left to whichever source answers: a failing
	// source stops Resolve, though a later one holds the name.
	if d, err := l.Resolve(ctx, f.Name); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), broken.String()) {
		t.Errorf("Resolve with the first source failing = %s, %v; want its failure (unavailable)", d.Digest, err)
	}
	absent := digest.FromString("absent")
	_, err = l.Info(ctx, absent)
	if errdefs.IsNotFound(err) || !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), broken.String()) {
		t.Errorf("Info(absent) with a failing source = %v, want its failure (unavailable), not absence", err)
	}
	if _, err := l.Resolve(ctx, "v9"); errdefs.IsNotFound(err) || !strings.Contains(err.Error(), broken.String()) {
		t.Errorf("Resolve(absent) with a failing source = %v, want its failure", err)
	}

	before := broken.Requests()
	l = source.List(layout, broken)
	if _, err := l.Info(ctx, layer.Desc.Digest); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Resolve(ctx, f.Name); err != nil || d.Digest != f.Image.Desc.Digest {
		t.Errorf("Resolve before a failing source = %s, %v; want the first source's root", d.Digest, err)
	}
	if broken.Requests() != before {
		t.Errorf("a later source was asked for a blob the first holds")
	}
	if _, err := source.List(layout).Info(ctx, absent); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), layout.String()) {
		t.Errorf("Info(absent) = %v, want not found naming the sources", err)
	}
}
