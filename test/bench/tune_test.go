package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// tuneConcurrency are the uploads in flight tried by benchTune.
var tuneConcurrency = []int{1, 2, 4, 8, 16}

// benchTune: the full heal of the 2-platform image with `regmend heal
// --uploads N`, beside the registry's floor at the same N, to choose
// heal.DefaultUploads.
func benchTune(ctx context.Context, t *testing.T, rep *report) {
	reg := harness.StartRegistry(t, harness.RegistryOptions{Name: "target"})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node", LogLevel: "info"})
	node.UseRegistry(reg)
	a := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", runtime.GOARCH), healLayers, healLayerSize)
	b := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", otherArch()), healLayers, healLayerSize)
	idx := imagetest.Index(t, imagetest.OCI, a, b)
	name := reg.Ref(healRepo + ":v1")
	loadImage(ctx, t, node, name, reg.Addr(), healRepo, idx)
	bin := harness.ProductBinary(t, "regmend")

	var tools []tool
	for _, c := range tuneConcurrency {
		cmd := command{"heal " + strconv.Itoa(c), bin, regmendArgs(node, "heal", "--uploads", strconv.Itoa(c), name)}
		tools = append(tools, timed(ctx, t, []command{cmd})[0])
		fl := floorTool(ctx, t, reg, healRepo, idx, c)
		fl.name = "floor " + strconv.Itoa(c)
		tools = append(tools, fl)
	}
	m := measure(t, node, reg, *benchRuns, tools, func(tool) { emptyRegistry(t, reg) }, nil)
	var rows [][]string
	for _, c := range tuneConcurrency {
		h, f := m["heal "+strconv.Itoa(c)], m["floor "+strconv.Itoa(c)]
		def := ""
		if c == heal.DefaultUploads {
			def = " (default)"
		}
		rows = append(rows, []string{strconv.Itoa(c) + def, h.times.String(), f.times.String(), ratio(h.times.median(), f.times.median()),
			secs(h.cpuTool.median()), secs(h.cpuRegistry.median()), secs(f.cpuRegistry.median())})
	}
	rep.add(section{
		title: fmt.Sprintf("Upload concurrency (full heal, 2 platforms × 4 layers × 8 MiB, %d cores)", runtime.NumCPU()),
		intro: "`regmend heal --uploads N` into an empty registry, beside the registry's floor with N uploads in flight (see above). " +
			"distribution's filesystem driver syncs each blob to disk before it answers the PUT, so uploads in flight overlap those waits as well as the hashing.",
		header: []string{"uploads in flight", "regmend heal", "registry floor", "heal / floor", "CPU: regmend", "registry (heal)", "registry (floor)"},
		rows:   rows,
	})
}
