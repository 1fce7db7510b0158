package mirror

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

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
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
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	child := imagetest.Manifest(t, imagetest.OCI, healtest.AMD64, 1, 64)
	idx := imagetest.Index(t, imagetest.OCI, child, imagetest.Manifest(t, imagetest.OCI, healtest.ARM64, 1, 64))
	imagetest.WriteLocal(t, f.CS, f.Host, "multi", idx, idx.Children[1].Desc.Digest)
	before := snapshot(t, f.CS)

	ro := readOnly{f.CS, f.CS}
	remote, _ := registry.NewRemote(registry.WithHostsDir(f.HostsDir), registry.WithRegistries(f.Host), registry.WithRetry(2, time.Millisecond))
	healer, err := heal.NewHealer(ro, remote)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := healer.Plan(context.Background(), heal.Target{Registry: f.Host, Repository: "app", Root: m1.Root()}); err != nil {
		t.Fatal(err)
	}
	if _, err := healer.Heal(context.Background(), heal.Target{Registry: f.Host, Repository: "app", Root: m1.Root()}); err != nil {
		t.Fatal(err)
	}
	q, _ := heal.NewQueue(healer, content.Local{Store: ro, Blobs: walkOnly{f.CS}}, heal.WithQuietPeriod(time.Millisecond))
	healtest.RunQueue(t, q)
	srv := httptest.NewServer(New(ro, remote, WithHealQueue(q)))
	defer srv.Close()
	for _, b := range []imagetest.Blob{child.Blob, child.Layers[0], idx.Blob} {
		kind := "blobs"
		if b.Desc.MediaType == child.Desc.MediaType || b.Desc.MediaType == idx.Desc.MediaType {
			kind = "manifests"
		}
		if resp, _ := get(t, http.MethodGet, srv.URL+"/v2/multi/"+kind+"/"+b.Desc.Digest.String()+"?ns="+f.Host); resp.StatusCode != 200 {
			t.Fatalf("mirror %s: %d", b.Desc.Digest, resp.StatusCode)
		}
	}
	imagetest.WaitUntil(t, 10*time.Second, "background heal of the index", func() bool {
		return q.Len() == 0 && imagetest.Has(t, f.Base, "multi", "manifests", child.Desc.Digest.String())
	})
	if after := snapshot(t, f.CS); after != before {
		t.Errorf("the local content store changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
