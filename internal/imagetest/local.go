package imagetest

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/opencontainers/go-digest"
)

// LocalStore is a real containerd content store in a temporary directory,
// returned with that directory.
func LocalStore(t testing.TB) (ctrcontent.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "content")
	cs, err := local.NewLabeledStore(dir, &labelStore{labels: map[digest.Digest]map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	return cs, dir
}

// WriteLocal writes o into the store as containerd's pull leaves it: gc.ref
// labels on parents and a distribution-source label naming repo of
// registry on every blob. Digests in skip are left out, as a node that
// pulled one platform of an index lacks the others.
func WriteLocal(t testing.TB, cs ctrcontent.Store, registry, repo string, o *Object, skip ...digest.Digest) {
	t.Helper()
	ctx := context.Background()
	skipped := map[digest.Digest]bool{}
	for _, d := range skip {
		skipped[d] = true
	}
	var write func(o *Object)
	write = func(o *Object) {
		if skipped[o.Desc.Digest] {
			return
		}
		for _, c := range o.Children {
			write(c)
		}
		leaves := append([]Blob{}, o.Layers...)
		if o.Config != nil {
			leaves = append(leaves, *o.Config)
		}
		for _, b := range leaves {
			if !skipped[b.Desc.Digest] {
				writeBlob(t, ctx, cs, b, sourceLabel(registry, repo))
			}
		}
		labels := sourceLabel(registry, repo)
		for k, v := range o.refLabels() {
			labels[k] = v
		}
		writeBlob(t, ctx, cs, o.Blob, labels)
	}
	write(o)
}

func sourceLabel(registry, repo string) map[string]string {
	host := registry
	if i := bytes.LastIndexByte([]byte(registry), ':'); i > 0 {
		host = registry[:i]
	}
	return map[string]string{"containerd.io/distribution.source." + host: repo}
}

func writeBlob(t testing.TB, ctx context.Context, cs ctrcontent.Store, b Blob, labels map[string]string) {
	t.Helper()
	err := ctrcontent.WriteBlob(ctx, cs, b.Desc.Digest.String(), bytes.NewReader(b.Data), b.Desc, ctrcontent.WithLabels(labels))
	if err != nil && !isExists(err) {
		t.Fatalf("write %s: %v", b.Desc.Digest, err)
	}
}

// Corrupt overwrites a stored blob's bytes in place (same size), as disk
// damage would. dir is the store's root.
func Corrupt(t testing.TB, root string, d digest.Digest) {
	t.Helper()
	p := filepath.Join(root, "blobs", d.Algorithm().String(), d.Encoded())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// labelStore keeps blob labels in memory for the local store, which keeps
// none of its own (containerd keeps them in its metadata database).
type labelStore struct {
	mu     sync.Mutex
	labels map[digest.Digest]map[string]string
}

func (s *labelStore) Get(d digest.Digest) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.labels[d]), nil
}

func (s *labelStore) Set(d digest.Digest, l map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.labels[d] = maps.Clone(l)
	return nil
}

func (s *labelStore) Update(d digest.Digest, update map[string]string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.labels[d]
	if l == nil {
		l = map[string]string{}
	}
	for k, v := range update {
		if v == "" {
			delete(l, k)
		} else {
			l[k] = v
		}
	}
	s.labels[d] = l
	return maps.Clone(l), nil
}
