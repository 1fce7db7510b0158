package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// TestCheckReportsDiscardedLayers: on a node whose containerd deleted an
// orphan's layers after unpack (what CRI's discard_unpacked_layers = true
// does; deleted here through containerd's API, as test setup), `regmend
// check` reports the image as "layers discarded after unpack", not as
// broken, and exits 3 (damage found).
func TestCheckReportsDiscardedLayers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	cs := s.nodeA.Client().ContentStore()
	nctx := namespaces.WithNamespace(ctx, s.nodeA.Namespace())
	for _, l := range s.img.Layers {
		if err := cs.Delete(nctx, l); err != nil {
			t.Fatalf("delete layer %s: %v", l, err)
		}
	}
	ref := s.reg.Ref("app@" + s.d1.String())
	out, code := regmend(ctx, t, s.nodeA, "check", "--containerd-config", s.nodeA.ConfigPath(), ref)
	if code != 3 {
		t.Fatalf("check exit %d, want 3 (damage found):\n%s", code, out)
	}
	const state = "layers discarded after unpack (discard_unpacked_layers)"
	row := ""
	for _, ln := range strings.Split(out, "\n") {
		if strings.Contains(ln, ref) && !strings.HasPrefix(ln, " ") {
			row = ln
			break
		}
	}
	if !strings.HasPrefix(row, state) {
		t.Errorf("check row %q, want it to start with %q:\n%s", row, state, out)
	}
	if !strings.Contains(out, "0 broken") || !strings.Contains(out, "1 "+state) {
		t.Errorf("summary does not count the image as discarded:\n%s", out)
	}
	if strings.Contains(out, "warning:") {
		t.Errorf("check warned about the test node's containerd config:\n%s", out)
	}
}
