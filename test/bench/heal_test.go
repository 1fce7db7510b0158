package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/test/e2e/harness"
)

// The image healed: 2 platforms × 4 layers × 8 MiB.
const (
	healLayers    = 4
	healLayerSize = 8 << 20
	healRepo      = "bench"
)

// tool is one command measured side by side with others.
type tool struct {
	name string
	run  func() run
}

// measurement is what repeated runs of one tool gave.
type measurement struct {
	times               durations
	reqs, writes, conns []int64
	maxRSS              []int64 // KiB
	// CPU used during the run by the tool, and by the daemons it talked to.
	cpuTool, cpuContainerd, cpuRegistry durations
}

func (m *measurement) requests() string {
	if len(m.reqs) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d (%d writes) on %d conns", medianInt(m.reqs), medianInt(m.writes), medianInt(m.conns))
}

// measure runs every tool runs times, interleaved (A B C A B C ...), with
// prepare before and check after each run, counting the registry's requests.
func measure(t *testing.T, node *harness.Containerd, reg *harness.Registry, runs int, tools []tool, prepare, check func(tool)) map[string]*measurement {
	t.Helper()
	out := map[string]*measurement{}
	for _, tl := range tools {
		out[tl.name] = &measurement{}
	}
	for range runs {
		for _, tl := range tools {
			if prepare != nil {
				prepare(tl)
			}
			// Flush what earlier runs wrote, so their writeback does not
			// land in this run.
			syscall.Sync()
			var r run
			cpid, rpid := pidOf(t, node.ConfigPath()), pidOf(t, reg.ConfigPath())
			c0, r0 := cpuTime(cpid), cpuTime(rpid)
			tr := requests(t, reg, func() { r = tl.run() })
			m := out[tl.name]
			m.cpuTool = append(m.cpuTool, r.cpu)
			m.cpuContainerd = append(m.cpuContainerd, cpuTime(cpid)-c0)
			m.cpuRegistry = append(m.cpuRegistry, cpuTime(rpid)-r0)
			m.times = append(m.times, r.took)
			m.reqs, m.writes = append(m.reqs, int64(tr.requests)), append(m.writes, int64(tr.writes))
			m.conns = append(m.conns, int64(tr.conns))
			m.maxRSS = append(m.maxRSS, r.maxRSS)
			if check != nil {
				check(tl)
			}
		}
	}
	return out
}

// otherArch is a platform this machine does not run.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// benchHeal: scenario 1 (full heal into an empty registry) and scenario 2
// (partial heals), regmend against ctr images push.
func benchHeal(ctx context.Context, t *testing.T, rep *report) {
	reg := harness.StartRegistry(t, harness.RegistryOptions{Name: "target"})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node", LogLevel: "info"})
	node.UseRegistry(reg)
	a := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", runtime.GOARCH), healLayers, healLayerSize)
	b := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", otherArch()), healLayers, healLayerSize)
	idx := imagetest.Index(t, imagetest.OCI, a, b)
	name := reg.Ref(healRepo + ":v1")
	loadImage(ctx, t, node, name, reg.Addr(), healRepo, idx)
	tools := timed(ctx, t, pushCommands(t, node, name))

	var total int64
	for _, bl := range idx.Blobs() {
		total += bl.Desc.Size
	}
	healed := func(tool) {
		for _, d := range []digest.Digest{idx.Desc.Digest, a.Desc.Digest, b.Desc.Digest} {
			if !reg.ManifestExists(healRepo, d) {
				t.Fatalf("after the push, the registry lacks manifest %s", d)
			}
		}
		for _, l := range append(a.Layers, b.Layers...) {
			if !reg.BlobExists(healRepo, l.Desc.Digest) {
				t.Fatalf("after the push, the registry lacks layer %s", l.Desc.Digest)
			}
		}
	}
	pnode, plugin, addrFile := pluginNode(t, reg)
	loadImage(ctx, t, pnode, name, reg.Addr(), healRepo, idx)
	root := idx.Desc.Digest.String()
	fullTools := append(slices.Clone(tools),
		serveTool(ctx, t, node, reg, healRepo, root),
		pluginTool(ctx, t, pnode, plugin, addrFile, reg, healRepo, root),
		floorTool(ctx, t, reg, healRepo, idx, floorConcurrency))
	full := measure(t, node, reg, *benchRuns, fullTools, func(tool) { emptyRegistry(t, reg) }, healed)
	pnode.Stop()

	// Partial: the registry holds the image; the second child is lost.
	emptyRegistry(t, reg)
	tools[1].run()
	lostManifest := func(tool) { reg.DeleteManifest(healRepo, b.Desc.Digest) }
	lostBlobs := func(tl tool) {
		lostManifest(tl)
		for _, l := range append([]imagetest.Blob{*b.Config}, b.Layers...) {
			deleteBlob(t, reg, healRepo, l.Desc.Digest)
		}
	}
	none := measure(t, node, reg, *benchRuns, tools, nil, healed)
	manifest := measure(t, node, reg, *benchRuns, tools, lostManifest, healed)
	blobs := measure(t, node, reg, *benchRuns, tools, lostBlobs, healed)

	childBytes := b.Desc.Size + b.Config.Desc.Size
	for _, l := range b.Layers {
		childBytes += l.Desc.Size
	}
	cases := []struct {
		what    string
		missing int64
		m       map[string]*measurement
	}{
		{"nothing (registry healthy)", 0, none},
		{"1 child manifest", b.Desc.Size, manifest},
		{"1 child manifest + its config and 4 layers", childBytes, blobs},
		{"everything (empty registry)", total, full},
	}
	var rows [][]string
	for _, c := range cases {
		rg, ct, cl := c.m[tools[0].name], c.m[tools[1].name], c.m[tools[2].name]
		rows = append(rows, []string{c.what, size(c.missing), rg.times.String(), ct.times.String(), cl.times.String(),
			ratio(rg.times.median(), ct.times.median()), rg.requests(), ct.requests(), cl.requests()})
	}
	rep.add(section{
		title: "1–2. Heal vs `ctr images push` (2 platforms × 4 layers × 8 MiB)",
		intro: fmt.Sprintf("The node's content store holds a 2-platform OCI index (%s in all: 2 manifests, 2 configs, 8 random 8 MiB layers), written with the labels a pull leaves. "+
			"Each run damages a distribution %s registry as the first column says, then runs `regmend heal REG/%s:v1`, `ctr images push --hosts-dir DIR REG/%s:v1` (transfer service: containerd uploads) or the same with `--local` (ctr uploads). "+
			"An empty registry is a fresh storage directory; a lost child is `DELETE` of its manifest (and of its blobs' links). Requests are counted from the registry's access log, connections as the distinct client addresses in its log.",
			size(total), "v3", healRepo, healRepo),
		header: []string{"missing in the registry", "bytes missing", "regmend heal", "ctr push", "ctr push --local", "regmend / ctr push", "requests: regmend", "ctr push", "ctr --local"},
		rows:   rows,
		notes: []string{
			"regmend binds a retention tag (`sha256-<hex>.regmend`) to the re-pushed orphan root instead of `v1`; ctr pushes the tag. Both write the index once.",
		},
	})

	var cpuRows [][]string
	for _, tl := range tools {
		m := full[tl.name]
		sum := m.cpuTool.median() + m.cpuContainerd.median() + m.cpuRegistry.median()
		cpuRows = append(cpuRows, []string{tl.name, secs(m.times.median()), secs(m.cpuTool.median()), secs(m.cpuContainerd.median()),
			secs(m.cpuRegistry.median()), secs(sum), fmt.Sprintf("%.2f", float64(sum)/float64(m.times.median()))})
	}
	rep.add(section{
		title:  "CPU by process during the full heal",
		intro:  fmt.Sprintf("Medians of the runs above (everything missing, %s). CPU is user + system time from rusage (the tool) and /proc/PID/stat (the daemons, 10 ms ticks).", size(total)),
		header: []string{"tool", "wall", "CPU: tool", "containerd", "registry", "all", "cores busy (all / wall)"},
		rows:   cpuRows,
	})
	floorSection(rep, full, size(total))
	diagnoseHeal(ctx, t, rep, node, reg, healRepo, idx.Root(), total, "2 platforms × 4 layers × 8 MiB", *benchRuns)

	rg := func(m map[string]*measurement) time.Duration { return m[tools[0].name].times.median() }
	ct := func(m map[string]*measurement) time.Duration { return m[tools[1].name].times.median() }
	for _, name := range []string{tools[0].name, serveName} {
		d := full[name].times.median()
		rep.claim(fmt.Sprintf("full heal (%s) into an empty registry by %s, vs `ctr images push`", size(total), name),
			secs(d), secs(ct(full)), ratio(d, ct(full)), "≤ 0.80x", float64(d) <= 0.8*float64(ct(full)))
	}
	d := full[pluginName].times.median()
	rep.info(fmt.Sprintf("full heal (%s) into an empty registry by %s, vs `ctr images push`", size(total), pluginName),
		secs(d), secs(ct(full)), ratio(d, ct(full)))
	floor := full[floorName].times.median()
	for _, name := range []string{tools[0].name, serveName, pluginName, tools[1].name} {
		d := full[name].times.median()
		rep.info(fmt.Sprintf("… %s vs the registry's floor (the same blobs from memory, %d uploads in flight)", name, floorConcurrency),
			secs(d), secs(floor), ratio(d, floor))
	}
	rep.info(fmt.Sprintf("partial heal (1 child and its blobs, %s missing), vs `ctr images push`", size(childBytes)),
		secs(rg(blobs)), secs(ct(blobs)), ratio(rg(blobs), ct(blobs)))
	rep.info(fmt.Sprintf("partial heal (1 child manifest, %s missing), vs `ctr images push`", size(b.Desc.Size)),
		secs(rg(manifest)), secs(ct(manifest)), ratio(rg(manifest), ct(manifest)))
	// Proportional: the time above a heal that finds nothing missing, as a
	// share of the full heal's, against the bytes missing as a share of all.
	fixed := rg(none)
	share := func(m map[string]*measurement) float64 { return float64(rg(m)-fixed) / float64(rg(full)-fixed) }
	half := float64(childBytes) / float64(total)
	rep.claim(fmt.Sprintf("heal time above a no-op heal, as a share of the full heal's: 1 child and its blobs lost (%s)", size(childBytes)),
		fmt.Sprintf("%.2f", share(blobs)), fmt.Sprintf("bytes: %.2f", half), "", "bytes share ± 0.15", math.Abs(share(blobs)-half) <= 0.15)
	// A lost manifest is evidence that the registry lost content, so the
	// heal reads every blob's first byte instead of believing its HEAD and
	// reads back what it wrote: a cost per node of the closure, not per
	// byte, which is what the wider bound allows for.
	tiny := float64(b.Desc.Size) / float64(total)
	rep.claim(fmt.Sprintf("… 1 child manifest lost (%s; every blob read, not asked)", size(b.Desc.Size)),
		fmt.Sprintf("%.3f", share(manifest)), fmt.Sprintf("bytes: %.5f", tiny), "", "bytes share ± 0.10", math.Abs(share(manifest)-tiny) <= 0.10)
}

// command is a program and its arguments.
type command struct {
	name string
	bin  string
	args []string
}

// pushCommands are regmend heal, ctr push and ctr push --local of name.
func pushCommands(t *testing.T, node *harness.Containerd, name string) []command {
	regmend := harness.ProductBinary(t, "regmend")
	ctr := harness.Tool(t, harness.ToolCtr)
	return []command{
		{"regmend heal", regmend, regmendArgs(node, "heal", name)},
		{"ctr images push", ctr, ctrArgs(node, "images", "push", "--hosts-dir", node.HostsDir(), name)},
		{"ctr images push --local", ctr, ctrArgs(node, "images", "push", "--local", "--hosts-dir", node.HostsDir(), name)},
	}
}

// timed runs each command directly, for its wall and CPU time.
func timed(ctx context.Context, t *testing.T, cmds []command) []tool {
	var out []tool
	for _, c := range cmds {
		out = append(out, tool{c.name, func() run { return execute(ctx, t, c.bin, c.args...) }})
	}
	return out
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
