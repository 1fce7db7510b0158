package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/test/e2e/harness"
)

// memLayerSize is the one layer healed while memory is measured.
const memLayerSize = 256 << 20

// rssLimitKiB is the goal for regmend's peak RSS: well under the layer, so
// the layer is streamed, never held.
const rssLimitKiB = 64 << 10

// benchMemory: scenario 4, peak RSS of a heal of a 256 MiB layer.
func benchMemory(ctx context.Context, t *testing.T, rep *report) {
	reg := harness.StartRegistry(t, harness.RegistryOptions{Name: "target"})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node", LogLevel: "info"})
	node.UseRegistry(reg)
	const repo = "big"
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", runtime.GOARCH), 1, memLayerSize)
	name := reg.Ref(repo + ":v1")
	loadImage(ctx, t, node, name, reg.Addr(), repo, img)
	cmds := pushCommands(t, node, name)

	// ctr's default push runs in containerd: measure the daemon's peak
	// (VmHWM, reset before each run) above its resident set before the run.
	pid := pidOf(t, node.ConfigPath())
	var daemonPeak, daemonGrowth, floors []int64
	var tools []tool
	for i, c := range cmds {
		tools = append(tools, tool{c.name, func() run {
			var before int64
			var err error
			if i == 1 {
				if before, err = procStatusKiB(pid, "VmRSS"); err == nil {
					err = resetPeakRSS(pid)
				}
			}
			r, floor := executeRSS(ctx, t, c.bin, c.args...)
			floors = append(floors, floor)
			if i == 1 {
				peak, err2 := procStatusKiB(pid, "VmHWM")
				if err != nil || err2 != nil {
					t.Logf("containerd peak RSS not measured: %v %v", err, err2)
					return r
				}
				daemonPeak, daemonGrowth = append(daemonPeak, peak), append(daemonGrowth, peak-before)
			}
			return r
		}})
	}
	runs := min(*benchRuns, 3)
	m := measure(t, node, reg, runs, tools, func(tool) { emptyRegistry(t, reg) }, func(tool) {
		if !reg.BlobExists(repo, img.Layers[0].Desc.Digest) || !reg.ManifestExists(repo, img.Desc.Digest) {
			t.Fatal("after the push, the registry lacks the 256 MiB image")
		}
	})

	rg, ct, cl := m[tools[0].name], m[tools[1].name], m[tools[2].name]
	rows := [][]string{
		{"`regmend heal`", mib(medianInt(rg.maxRSS)), rg.times.String(), "the process that reads and uploads"},
		{"`ctr images push --local`", mib(medianInt(cl.maxRSS)), cl.times.String(), "ctr reads over gRPC and uploads, as regmend does"},
		{"`ctr images push` (ctr process)", mib(medianInt(ct.maxRSS)), ct.times.String(), "ctr only asks containerd's transfer service to push"},
	}
	if len(daemonPeak) > 0 {
		rows = append(rows, []string{"`ctr images push` (containerd daemon)", mib(medianInt(daemonPeak)), ct.times.String(),
			fmt.Sprintf("VmHWM during the push; %s above its resident set before it", mib(medianInt(daemonGrowth)))})
	}
	rep.add(section{
		title: "4. Peak memory of a heal of a 256 MiB layer",
		intro: fmt.Sprintf("One single-platform image with one random %d MiB layer, healed into an empty registry; %d runs, median. "+
			"Peak RSS is the process's rusage `ru_maxrss`, taken by a small wrapper process that execs it: "+
			"Go starts children with vfork, and Linux then counts the parent's own peak into the child's `ru_maxrss`, so a child of the test process (which holds the 256 MiB of test data) would report at least that. "+
			"The wrapper's own peak, %s, is the least it can report.", memLayerSize>>20, runs, mib(slices.Max(floors))),
		header: []string{"process", "peak RSS", "time", ""},
		rows:   rows,
	})
	rep.claim("peak RSS of `regmend heal` of a 256 MiB layer", mib(medianInt(rg.maxRSS)),
		mib(medianInt(cl.maxRSS))+" (ctr --local)", fmt.Sprintf("%.2fx", float64(medianInt(rg.maxRSS))/float64(max(medianInt(cl.maxRSS), 1))),
		"< 64 MiB", medianInt(rg.maxRSS) < rssLimitKiB)
	diagnoseHeal(ctx, t, rep, node, reg, repo, img.Root(), img.Layers[0].Desc.Size+img.Config.Desc.Size+img.Desc.Size, "one 256 MiB layer", runs)
	rep.info("time of that 256 MiB heal, vs `ctr images push`", secs(rg.times.median()), secs(ct.times.median()),
		ratio(rg.times.median(), ct.times.median()))
}
