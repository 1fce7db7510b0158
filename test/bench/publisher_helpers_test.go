package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/test/e2e/harness"
)

// Helpers of the publisher scenario (publisher_test.go).

func medianTraffic(ts []traffic) string {
	var r, w, c []int64
	for _, t := range ts {
		r, w, c = append(r, int64(t.requests)), append(w, int64(t.writes)), append(c, int64(t.conns))
	}
	return fmt.Sprintf("%d (%d writes) on %d conns", medianInt(r), medianInt(w), medianInt(c))
}

func medianWrites(ts []traffic) int64 {
	var w []int64
	for _, t := range ts {
		w = append(w, int64(t.writes))
	}
	return medianInt(w)
}

// hasHealFrom reports whether the regmend binary's heal takes --from.
func hasHealFrom(ctx context.Context, bin string) bool {
	out, err := exec.CommandContext(ctx, bin, "heal", "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "--from")
}

// benchTool is a tool `make bench-tools` builds into the tools cache. The
// table is asked for explicitly, so a missing tool fails, never skips.
func benchTool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(harness.ToolsDir(), name)
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("the publisher scenario needs %s at %s: run `make bench-tools` (or set $%s)", name, p, harness.EnvTools)
	}
	return p
}

func skopeoPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath(toolSkopeo)
	if err != nil {
		t.Fatalf("the publisher scenario needs skopeo: apt-get install skopeo (%v)", err)
	}
	return p
}

// writeHostsTOML points regmend at a plain-HTTP registry, as
// harness.Containerd.UseRegistry does for a node.
func writeHostsTOML(t testing.TB, dir, addr string) {
	t.Helper()
	d := filepath.Join(dir, addr)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(harness.HostsTOML(addr)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// servesBlob reports whether a GET of the blob answers 200 with content
// that matches d. The request is the harness's own, left out of the counts.
func servesBlob(t testing.TB, reg *harness.Registry, repo string, d digest.Digest) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, reg.URL()+"/v2/"+repo+"/blobs/"+d.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", harness.HarnessUserAgent)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("GET blob %s: %v", d, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	v := d.Verifier()
	if _, err := io.Copy(v, resp.Body); err != nil {
		t.Fatalf("GET blob %s: %v", d, err)
	}
	return v.Verified()
}

// writeLayout writes o, every blob of it, into a new OCI image layout whose
// index.json names o's root "v1", and returns the layout's directory.
func writeLayout(t testing.TB, o *imagetest.Object) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	hash := func(d digest.Digest) v1.Hash {
		h, err := v1.NewHash(d.String())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	for _, bl := range o.Blobs() {
		if err := p.WriteBlob(hash(bl.Desc.Digest), io.NopCloser(bytes.NewReader(bl.Data))); err != nil {
			t.Fatalf("layout blob %s: %v", bl.Desc.Digest, err)
		}
	}
	root := v1.Descriptor{MediaType: types.MediaType(o.Desc.MediaType), Size: o.Desc.Size, Digest: hash(o.Desc.Digest),
		Annotations: map[string]string{ocispec.AnnotationRefName: "v1"}}
	if err := p.AppendDescriptor(root); err != nil {
		t.Fatal(err)
	}
	return dir
}

// byMethod counts requests by HTTP method.
func byMethod(reqs []harness.Request) map[string]int64 {
	out := map[string]int64{}
	for _, r := range reqs {
		out[r.Method]++
	}
	return out
}

// medianByMethod is, for each method seen, the median over runs of its
// count: "3 HEAD, 19 GET, 5 POST".
func medianByMethod(runs []map[string]int64) string {
	order := []string{http.MethodHead, http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete}
	var parts []string
	for _, meth := range order {
		var v []int64
		seen := false
		for _, r := range runs {
			v = append(v, r[meth])
			seen = seen || r[meth] > 0
		}
		if seen {
			parts = append(parts, fmt.Sprintf("%d %s", medianInt(v), meth))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
