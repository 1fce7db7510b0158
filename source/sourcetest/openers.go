package sourcetest

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
)

// OpenLayout writes the image into an OCI image layout (WriteLayout) and
// opens it with source.Layout. Changes compares the layout's files, bytes,
// modes and times with how they were written.
func OpenLayout(t *testing.T, f *Fixture) source.Source {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	WriteLayout(t, dir, f.Image, f.Name)
	f.Changes = SnapshotDir(t, dir)
	f.Damage = func(t *testing.T, d digest.Digest, how Damage) { damageFile(t, dir, d, how) }
	l, err := source.Layout(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// OpenContainerd writes the image into containerd's local content store as
// a pull leaves it (imagetest.WriteLocal, from edge:5000/app) and records
// it as edge:5000/app:v1 in containerd's metadata image store (bolt, in
// the test's directory).
func OpenContainerd(t *testing.T, f *Fixture) source.Source {
	t.Helper()
	cs, root := imagetest.LocalStore(t)
	imagetest.WriteLocal(t, cs, "edge:5000", "app", f.Image)
	bdb, err := bolt.Open(filepath.Join(t.TempDir(), "meta.db"), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bdb.Close() })
	db := metadata.NewDB(bdb, cs, nil)
	if err := db.Init(Context(t)); err != nil {
		t.Fatal(err)
	}
	imgs := metadata.NewImageStore(db)
	f.Name = "edge:5000/app:" + f.Name
	if _, err := imgs.Create(Context(t), images.Image{Name: f.Name, Target: f.Image.Root()}); err != nil {
		t.Fatal(err)
	}
	f.Changes = SnapshotDir(t, root)
	f.Damage = func(t *testing.T, d digest.Digest, how Damage) { damageFile(t, root, d, how) }
	return source.NewContainerd(cs, source.WithImages(imgs))
}

// OpenRegistry pushes the image to repository "app" of a fresh in-memory
// registry, tagged with the fixture's name, and reads it with
// source.NewRegistry. Changes lists the writes the registry saw since;
// Damage makes the registry serve the blob's bytes damaged (a registry
// verifies what it takes, so it cannot hold them so).
func OpenRegistry(t *testing.T, f *Fixture) source.Source {
	t.Helper()
	reg := imagetest.NewRegistry(t)
	imagetest.Push(t, reg.Base, "app", f.Name, f.Image)
	reg.Log.Reset()
	f.Changes = func(t *testing.T) []string {
		var out []string
		for _, r := range reg.Log.Writes() {
			out = append(out, r.Method+" "+r.Path)
		}
		return out
	}
	f.Damage = func(t *testing.T, d digest.Digest, how Damage) { ServeDamaged(reg, f, d, how) }
	remote, err := registry.NewRemote(registry.WithHostsDir(reg.HostsDir), registry.WithRetry(4, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.NewRegistry(Context(t), remote, reg.Host, "app")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// OpenList is a list of two sources: containerd's store lacking the first
// platform's layers (as a node that pulled only some of an index), then a
// layout holding everything. Damage goes to the first that holds the blob.
func OpenList(t *testing.T, f *Fixture) source.Source {
	t.Helper()
	var skip []digest.Digest
	for _, l := range f.Image.Children[0].Layers {
		skip = append(skip, l.Desc.Digest)
	}
	cs, root := imagetest.LocalStore(t)
	imagetest.WriteLocal(t, cs, "edge:5000", "app", f.Image, skip...)
	dir := filepath.Join(t.TempDir(), "layout")
	WriteLayout(t, dir, f.Image, f.Name)
	l, err := source.Layout(dir)
	if err != nil {
		t.Fatal(err)
	}
	inStore, inLayout := SnapshotDir(t, root), SnapshotDir(t, dir)
	f.Changes = func(t *testing.T) []string { return append(inStore(t), inLayout(t)...) }
	f.Damage = func(t *testing.T, d digest.Digest, how Damage) {
		if contains(skipped(f, skip), d) {
			damageFile(t, dir, d, how)
		} else {
			damageFile(t, root, d, how)
		}
	}
	return source.List(source.NewContainerd(cs), l)
}

func skipped(f *Fixture, skip []digest.Digest) []imagetest.Blob {
	var out []imagetest.Blob
	for _, b := range f.Blobs() {
		for _, d := range skip {
			if b.Desc.Digest == d {
				out = append(out, b)
			}
		}
	}
	return out
}

// damageFile damages blobs/<alg>/<hex> under root, as disk damage would.
func damageFile(t *testing.T, root string, d digest.Digest, how Damage) {
	t.Helper()
	p := filepath.Join(root, "blobs", d.Algorithm().String(), d.Encoded())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if how == Short {
		b = b[:len(b)/2]
	} else {
		b[len(b)/2] ^= 0xff
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ServeDamaged makes reg answer every GET of d in repository "app" damaged
// (HEADs stay true): Corrupt serves all its bytes with one flipped; Short
// announces all of them and sends half, whatever Range was asked.
func ServeDamaged(reg *imagetest.Registry, f *Fixture, d digest.Digest, how Damage) {
	var data []byte
	mediaType := "application/octet-stream"
	for _, b := range f.Blobs() {
		if b.Desc.Digest == d {
			data = append([]byte(nil), b.Data...)
			if contains(manifests(f.Image), d) {
				mediaType = b.Desc.MediaType
			}
		}
	}
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/"+d.String()) {
			return false
		}
		w.Header().Set("Content-Type", mediaType)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		if how == Short {
			w.Write(data[:len(data)/2])
			return true
		}
		bad := append([]byte(nil), data...)
		bad[len(bad)/2] ^= 0xff
		w.Write(bad)
		return true
	})
}

// SnapshotDir records every file and directory under dir (mode, size,
// modification time, and a file's sha256) and returns a func listing what
// differs from it since.
func SnapshotDir(t *testing.T, dir string) func(t *testing.T) []string {
	t.Helper()
	before := snapshot(t, dir)
	return func(t *testing.T) []string {
		after := snapshot(t, dir)
		var out []string
		for p, s := range after {
			if b, ok := before[p]; !ok {
				out = append(out, "created "+p)
			} else if b != s {
				out = append(out, "changed "+p)
			}
		}
		for p := range before {
			if _, ok := after[p]; !ok {
				out = append(out, "removed "+p)
			}
		}
		return out
	}
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		s := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
