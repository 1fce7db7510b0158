package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/regmend/regmend/test/e2e/harness"
)

// checkImages is how many images the node holds when `check` runs.
const checkImages = 50

// hasCheck reports whether the regmend binary has the check command.
func hasCheck(ctx context.Context, bin string) bool {
	out, err := exec.CommandContext(ctx, bin, "check", "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "regmend check")
}

// benchCheck: scenario 5. The cost of checking 50 images a node pulled
// (2-platform indexes; the node holds one platform of each).
func benchCheck(ctx context.Context, t *testing.T, rep *report) {
	reg := harness.StartRegistry(t, harness.RegistryOptions{Name: "registry"})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node", LogLevel: "info"})
	node.UseRegistry(reg)
	platforms := []string{harness.HostPlatform, "linux/" + otherArch()}
	refs := make([]string, checkImages)
	for i := range refs {
		refs[i] = reg.Ref(fmt.Sprintf("app%02d:v1", i))
		harness.PushIndex(ctx, t, refs[i], harness.IndexSpec{Platforms: platforms, Layers: 1, LayerSize: 1024})
	}
	var g errgroup.Group
	g.SetLimit(4)
	for _, ref := range refs {
		g.Go(func() error {
			if out, err := node.Pull(ctx, ref); err != nil {
				return fmt.Errorf("pull %s: %w\n%s", ref, err, out)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	bin := harness.ProductBinary(t, "regmend")
	var took durations
	var reqs, conns []int64
	var how string
	check := hasCheck(ctx, bin)
	for range *benchRuns {
		var d time.Duration
		tr := requests(t, reg, func() {
			if check {
				d = execute(ctx, t, bin, regmendArgs(node, "check", "--registry", reg.Addr())...).took
				return
			}
			for _, ref := range refs {
				d += execute(ctx, t, bin, regmendArgs(node, "heal", "--dry-run", ref)...).took
			}
		})
		if tr.writes != 0 {
			t.Fatalf("a check wrote to the registry: %d writes", tr.writes)
		}
		took, reqs, conns = append(took, d), append(reqs, int64(tr.requests)), append(conns, int64(tr.conns))
	}
	if check {
		how = fmt.Sprintf("`regmend check --registry REG` (all %d images in one run)", checkImages)
	} else {
		how = fmt.Sprintf("TODO: `regmend check` is not in this build; measured `regmend heal --dry-run REG/REPO:TAG` once per image, %d processes", checkImages)
	}
	perImage := took.median() / checkImages
	req := float64(medianInt(reqs)) / checkImages
	rep.add(section{
		title: fmt.Sprintf("5. Check cost: %d images", checkImages),
		intro: fmt.Sprintf("The node pulled %d images through CRI, each a 2-platform index with one 1 KiB layer per platform (the node holds its own platform's child). "+
			"Measured: %s, against a healthy registry; requests from the registry's access log.", checkImages, how),
		header: []string{"measured", "total", "per image", "registry requests", "per image", "client TCP connections"},
		rows: [][]string{{how, took.String(), secs(perImage), fmt.Sprintf("%d", medianInt(reqs)), fmt.Sprintf("%.1f", req),
			fmt.Sprintf("%d", medianInt(conns))}},
	})
	claim := fmt.Sprintf("check of %d images: time and registry requests per image", checkImages)
	measured := fmt.Sprintf("%s, %.1f requests", secs(perImage), req)
	if !check {
		rep.todo(claim+" (`regmend check` missing: `heal --dry-run` per image measured)", measured, "none set")
		return
	}
	rep.info(claim, measured, "", "")
}
