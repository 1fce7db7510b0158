package bench

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/test/e2e/harness"
)

var benchBefore = flag.String("benchbefore", "", "a regmend `binary` built before issue 13's changes, measured as the first step (steps scenario)")

// benchSteps: the full heal with each of issue 13's changes turned on in
// turn, by regmend's own flags, interleaved with ctr push and the floor.
func benchSteps(ctx context.Context, t *testing.T, rep *report) {
	reg := harness.StartRegistry(t, harness.RegistryOptions{Name: "target"})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node", LogLevel: "info"})
	node.UseRegistry(reg)
	a := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", runtime.GOARCH), healLayers, healLayerSize)
	b := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", otherArch()), healLayers, healLayerSize)
	idx := imagetest.Index(t, imagetest.OCI, a, b)
	name := reg.Ref(healRepo + ":v1")
	loadImage(ctx, t, node, name, reg.Addr(), healRepo, idx)
	bin := harness.ProductBinary(t, "regmend")
	ctr := pushCommands(t, node, name)[1]

	steps := []struct {
		name, what string
		cmd        command
	}{
		{"API reads, one presence check per node, 4 uploads", "the lean push alone: blobs read over containerd's API in 1 MiB blocks",
			command{"api", bin, regmendArgs(node, "--content-dir", "none", "heal", "--uploads", "4", name)}},
		{"+ reads from the content directory", "blobs read from containerd's content directory",
			command{"dir", bin, regmendArgs(node, "heal", "--uploads", "4", name)}},
		{"+ 8 uploads in flight (now the default)", "as `regmend heal` runs by default",
			command{"default", bin, regmendArgs(node, "heal", name)}},
	}
	if *benchBefore != "" {
		steps = append(steps[:0:0], append([]struct {
			name, what string
			cmd        command
		}{{"before: API reads through containerd's pusher (a second HEAD per node), 4 in flight", "regmend as it was (-benchbefore)",
			command{"before", *benchBefore, regmendArgs(node, "heal", name)}}}, steps...)...)
	}
	var cmds []command
	for _, s := range steps {
		cmds = append(cmds, s.cmd)
	}
	tools := append(timed(ctx, t, append(cmds, ctr)), floorTool(ctx, t, reg, healRepo, idx, floorConcurrency))
	m := measure(t, node, reg, *benchRuns, tools, func(tool) { emptyRegistry(t, reg) }, nil)
	ct, fl := m[ctr.name].times.median(), m[floorName].times.median()
	var rows [][]string
	for _, s := range steps {
		r := m[s.cmd.name]
		rows = append(rows, []string{s.name, s.what, r.times.String(), ratio(r.times.median(), ct), ratio(r.times.median(), fl),
			r.requests(), secs(r.cpuTool.median()), secs(r.cpuContainerd.median())})
	}
	for _, name := range []string{ctr.name, floorName} {
		r := m[name]
		rows = append(rows, []string{name, "", r.times.String(), ratio(r.times.median(), ct), ratio(r.times.median(), fl),
			r.requests(), secs(r.cpuTool.median()), secs(r.cpuContainerd.median())})
	}
	rep.add(section{
		title:  "Steps: the full heal (64.0 MiB, empty registry) with each change of issue 13",
		intro:  fmt.Sprintf("`regmend heal` into an empty registry with regmend's own flags turning each change on in turn, interleaved with `ctr images push` and the registry's floor (%d uploads in flight).", floorConcurrency),
		header: []string{"step", "what", "time", "/ ctr push", "/ floor", "requests", "CPU: tool", "containerd"},
		rows:   rows,
	})
}
