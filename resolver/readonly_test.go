package resolver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"

	"github.com/regmend/regmend/internal/imagetest"
)

// readOnly exposes only the reading half of a content store: regmend's
// healer, mirror, queue and root finder are built over it here, so the
// compiler proves they need no write access, and the snapshot below
// proves they made no change through any other path either.
type readOnly struct {
	ctrcontent.Provider
	ctrcontent.InfoProvider
}

type walkOnly struct{ ctrcontent.Store }

func (w walkOnly) Walk(ctx context.Context, fn ctrcontent.WalkFunc, filters ...string) error {
	return w.Store.Walk(ctx, fn, filters...)
}

// snapshot lists every blob with its size, labels and creation (the
// local store's file mtime; its UpdatedAt is the access time, which reads
// move).
func snapshot(t *testing.T, cs ctrcontent.Store) string {
	t.Helper()
	var lines []string
	err := cs.Walk(context.Background(), func(info ctrcontent.Info) error {
		var labels []string
		for k, v := range info.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		lines = append(lines, fmt.Sprintf("%s %d %s %s", info.Digest, info.Size, info.CreatedAt.Format(time.RFC3339Nano), strings.Join(labels, ",")))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestNeverWritesLocalContent: a heal, a plan, mirror requests and the
// background queue, all over read-only access to the content store, leave
// every blob, label and modification time as they were.
func TestNeverWritesLocalContent(t *testing.T) {
	f := newFixture(t)
	m1, _ := orphan(t, f, imagetest.OCI)
	child := imagetest.Manifest(t, imagetest.OCI, amd64, 1, 64)
	idx := imagetest.Index(t, imagetest.OCI, child, imagetest.Manifest(t, imagetest.OCI, arm64, 1, 64))
	imagetest.WriteLocal(t, f.cs, f.registry, "multi", idx, idx.Children[1].Desc.Digest)
	before := snapshot(t, f.cs)

	ro := readOnly{f.cs, f.cs}
	remote, _ := NewRemote(WithHostsDir(f.hostsDir), WithRegistries(f.registry), WithRetry(2, time.Millisecond))
	healer, err := NewHealer(ro, remote)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := healer.Plan(context.Background(), Target{Registry: f.registry, Repository: "app", Root: m1.Root()}); err != nil {
		t.Fatal(err)
	}
	if _, err := healer.Heal(context.Background(), Target{Registry: f.registry, Repository: "app", Root: m1.Root()}); err != nil {
		t.Fatal(err)
	}
	q, _ := NewQueue(healer, LocalRoots{Store: ro, Blobs: walkOnly{f.cs}}, WithQuietPeriod(time.Millisecond))
	runQueue(t, q)
	srv := httptest.NewServer(NewMirror(ro, remote, WithHealQueue(q)))
	defer srv.Close()
	for _, b := range []imagetest.Blob{child.Blob, child.Layers[0], idx.Blob} {
		kind := "blobs"
		if b.Desc.MediaType == child.Desc.MediaType || b.Desc.MediaType == idx.Desc.MediaType {
			kind = "manifests"
		}
		if resp, _ := get(t, http.MethodGet, srv.URL+"/v2/multi/"+kind+"/"+b.Desc.Digest.String()+"?ns="+f.registry); resp.StatusCode != 200 {
			t.Fatalf("mirror %s: %d", b.Desc.Digest, resp.StatusCode)
		}
	}
	waitUntil(t, 10*time.Second, "background heal of the index", func() bool {
		return q.Len() == 0 && imagetest.Has(t, f.base, "multi", "manifests", child.Desc.Digest.String())
	})
	if after := snapshot(t, f.cs); after != before {
		t.Errorf("the local content store changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
