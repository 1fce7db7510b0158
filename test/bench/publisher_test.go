package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/test/e2e/harness"
)

// Tools only the publisher scenario runs: built by `make bench-tools` into
// the tools cache (regctl, crane) or installed from Debian (skopeo).
const (
	toolRegctl = "regctl"
	toolCrane  = "crane"
	toolSkopeo = "skopeo"
)

// publisherTool is one way a publisher repairs the destination from an
// intact copy of the image.
type publisherTool struct {
	name   string // as the table shows it
	source string // what it copies from
	bin    string
	args   []string
	env    []string
}

// publisherRuns is what repeated runs of one tool gave.
type publisherRuns struct {
	times, cpu durations
	dest, src  []traffic
	// Each run's requests by method, per registry.
	destBy, srcBy      []map[string]int64
	repaired, attempts int
}

// total is the median over runs of both registries' requests together.
func (p *publisherRuns) total() int64 {
	var v []int64
	for i := range p.dest {
		v = append(v, int64(p.dest[i].requests+p.src[i].requests))
	}
	return medianInt(v)
}

func (p *publisherRuns) repairedAll() bool { return p.attempts > 0 && p.repaired == p.attempts }

// benchPublisher: a publisher's repair. The destination registry lost one
// child of a 2-platform index and that child's blobs; the publisher holds
// the intact index (an OCI layout, or a second registry) and repairs the
// destination with `regmend heal --from`, `regctl image copy
// --force-recursive`, `skopeo copy --all` or `crane copy`.
func benchPublisher(ctx context.Context, t *testing.T, rep *report) {
	regctl, crane, skopeo := benchTool(t, toolRegctl), benchTool(t, toolCrane), skopeoPath(t)
	bin := harness.ProductBinary(t, "regmend")
	dest := harness.StartRegistry(t, harness.RegistryOptions{Name: "destination"})
	origin := harness.StartRegistry(t, harness.RegistryOptions{Name: "origin"})
	a := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", runtime.GOARCH), healLayers, healLayerSize)
	b := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", otherArch()), healLayers, healLayerSize)
	idx := imagetest.Index(t, imagetest.OCI, a, b)
	imagetest.Push(t, origin.URL(), healRepo, "v1", idx)
	imagetest.Push(t, dest.URL(), healRepo, "v1", idx)
	layout := writeLayout(t, idx)
	var total int64
	for _, bl := range idx.Blobs() {
		total += bl.Desc.Size
	}

	// The competitors read their configuration from a private home, so
	// nothing of this machine's user leaks in; plain HTTP is set there.
	home := t.TempDir()
	env := []string{"HOME=" + home, "REGCTL_CONFIG=" + filepath.Join(home, "regctl.json")}
	for _, r := range []*harness.Registry{origin, dest} {
		executeEnv(ctx, t, env, regctl, "registry", "set", "--tls", "disabled", r.Addr())
	}
	// regmend learns that both registries speak plain HTTP from hosts.toml,
	// as on a node.
	hostsDir := t.TempDir()
	for _, r := range []*harness.Registry{origin, dest} {
		writeHostsTOML(t, hostsDir, r.Addr())
	}

	src := origin.Ref(healRepo + "@" + idx.Desc.Digest.String())
	dst := dest.Ref(healRepo + ":v1")
	var tools []publisherTool
	from := hasHealFrom(ctx, bin)
	if from {
		tools = append(tools,
			publisherTool{"regmend heal --from oci:DIR", "OCI layout", bin,
				[]string{"--hosts-dir", hostsDir, "heal", "--from", "oci:" + layout, dest.Ref(healRepo)}, nil},
			publisherTool{"regmend heal --from REG/REPO@DIGEST", "registry", bin,
				[]string{"--hosts-dir", hostsDir, "heal", "--from", src, dest.Ref(healRepo)}, nil})
	}
	tools = append(tools,
		publisherTool{"regctl image copy --force-recursive", "registry", regctl,
			[]string{"image", "copy", "--force-recursive", src, dst}, env},
		publisherTool{"skopeo copy --all", "registry", skopeo,
			[]string{"copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false", "docker://" + src, "docker://" + dst}, env},
		publisherTool{"crane copy", "registry", crane,
			[]string{"copy", "--insecure", src, dst}, env})

	lost := append([]imagetest.Blob{*b.Config}, b.Layers...)
	kept := append([]imagetest.Blob{*a.Config}, a.Layers...)
	damage := func() {
		if dest.ManifestExists(healRepo, b.Desc.Digest) {
			dest.DeleteManifest(healRepo, b.Desc.Digest)
		}
		for _, l := range lost {
			if dest.BlobExists(healRepo, l.Desc.Digest) {
				deleteBlob(t, dest, healRepo, l.Desc.Digest)
			}
		}
		// The same damage before every run: the child and its blobs are
		// gone, the index, the other child and its blobs are there.
		if dest.ManifestExists(healRepo, b.Desc.Digest) || slices.ContainsFunc(lost, func(l imagetest.Blob) bool { return dest.BlobExists(healRepo, l.Desc.Digest) }) {
			t.Fatal("the lost child is still in the destination after the damage")
		}
		if d, ok := dest.TagDigest(healRepo, "v1"); !ok || d != idx.Desc.Digest || !dest.ManifestExists(healRepo, a.Desc.Digest) ||
			slices.ContainsFunc(kept, func(l imagetest.Blob) bool { return !dest.BlobExists(healRepo, l.Desc.Digest) }) {
			t.Fatal("the damage took more than the lost child: the index, its tag or the other child is gone")
		}
	}
	// Repaired: a GET serves the lost child's manifest, byte for byte, and
	// every one of its blobs, verified against its digest.
	repaired := func() bool {
		body, _, ok := dest.GetManifest(healRepo, b.Desc.Digest.String())
		if !ok || string(body) != string(b.Data) {
			return false
		}
		for _, l := range lost {
			if !servesBlob(t, dest, healRepo, l.Desc.Digest) {
				return false
			}
		}
		return true
	}

	out := map[string]*publisherRuns{}
	for _, tl := range tools {
		out[tl.name] = &publisherRuns{}
	}
	for range *benchRuns {
		for _, tl := range tools {
			damage()
			syscall.Sync()
			var r run
			var st traffic
			d0, o0 := len(dest.Requests()), len(origin.Requests())
			dt := requests(t, dest, func() { st = requests(t, origin, func() { r = executeEnv(ctx, t, tl.env, tl.bin, tl.args...) }) })
			m := out[tl.name]
			m.times, m.cpu = append(m.times, r.took), append(m.cpu, r.cpu)
			m.dest, m.src = append(m.dest, dt), append(m.src, st)
			m.destBy, m.srcBy = append(m.destBy, byMethod(dest.Requests()[d0:])), append(m.srcBy, byMethod(origin.Requests()[o0:]))
			m.attempts++
			if repaired() {
				m.repaired++
			}
			if d, ok := dest.TagDigest(healRepo, "v1"); !ok || d != idx.Desc.Digest {
				t.Fatalf("after %s, v1 no longer names the index", tl.name)
			}
		}
	}

	var rows [][]string
	for _, tl := range tools {
		m := out[tl.name]
		verdict := fmt.Sprintf("yes (%d/%d runs)", m.repaired, m.attempts)
		if !m.repairedAll() {
			verdict = fmt.Sprintf("**no** (%d/%d runs)", m.repaired, m.attempts)
		}
		rows = append(rows, []string{tl.name, tl.source, m.times.String(), medianTraffic(m.dest), medianTraffic(m.src),
			fmt.Sprintf("%d", m.total()), verdict, secs(m.cpu.median())})
	}
	if !from {
		rows = append(rows, []string{"regmend heal --from (oci:DIR and REG/REPO@DIGEST)", "", "n/a: this regmend has no `heal --from`", "", "", "", "", ""})
	}
	var methodRows [][]string
	for _, tl := range tools {
		m := out[tl.name]
		methodRows = append(methodRows, []string{tl.name, medianByMethod(m.destBy), medianByMethod(m.srcBy)})
	}
	childBytes := b.Desc.Size
	for _, l := range lost {
		childBytes += l.Desc.Size
	}
	cm := out["crane copy"]
	craneNote := fmt.Sprintf("`crane copy` exited 0 and repaired %d of %d runs, with a median of %d writes to the destination", cm.repaired, cm.attempts, medianWrites(cm.dest))
	if cm.repaired == 0 {
		// What the method counts below show it asked: the index, by tag.
		craneNote += ": go-containerregistry's pusher asks whether the index is there under the tag (HEAD), finds it, and pushes none of its children"
	}
	rep.add(section{
		title: "6. A publisher's repair: one child of an index lost (2 platforms × 4 layers × 8 MiB)",
		intro: fmt.Sprintf("A distribution v3 registry holds a 2-platform OCI index (%s in all) tagged `v1`; before every run one child manifest (%s) and its config and 4 layers are deleted from it (`DELETE` of the manifest and of the blobs' links, as in section 1–2), %s missing. "+
			"The publisher holds the intact index in an OCI layout on disk, and in a second distribution registry (the source), and repairs the destination with each tool: "+
			"`regmend heal --from oci:DIR REG/%s`, `regmend heal --from SRC/%s@DIGEST REG/%s`, `regctl image copy --force-recursive SRC/%s@DIGEST REG/%s:v1`, `skopeo copy --all --preserve-digests docker://SRC/…@DIGEST docker://REG/%s:v1` and `crane copy SRC/…@DIGEST REG/%s:v1`, all over plain HTTP on loopback. "+
			"Requests are both registries', counted from their access logs as in section 1–2. Repaired means that afterwards a GET of the lost child's manifest returns its bytes and a GET of each of its blobs returns content matching the digest.",
			size(total), size(b.Desc.Size), size(childBytes), healRepo, healRepo, healRepo, healRepo, healRepo, healRepo, healRepo),
		header: []string{"tool", "source", "time", "requests: destination", "source", "all", "repaired", "CPU: tool"},
		rows:   rows,
		notes:  []string{craneNote + "."},
	})
	rep.add(section{
		title:  "… the same requests by method",
		intro:  "Where each tool's requests went: medians over the runs above, from the registries' access logs.",
		header: []string{"tool", "destination", "source"},
		rows:   methodRows,
	})

	claim := "publisher's repair: `regmend heal --from REG/REPO@DIGEST` vs the fastest tool that repairs"
	goal := "< 1 on both (fewer requests, less time)"
	var fastest string
	for _, tl := range tools {
		m := out[tl.name]
		if tl.bin == bin || !m.repairedAll() {
			continue
		}
		if fastest == "" || m.times.median() < out[fastest].times.median() {
			fastest = tl.name
		}
	}
	switch {
	case !from:
		rep.todo(claim, "not measured: this regmend has no `heal --from`", goal)
		return
	case fastest == "":
		rep.todo(claim, "not measured: no other tool repaired in every run", goal)
		return
	}
	fm := out[fastest]
	figures := func(m *publisherRuns) string {
		return fmt.Sprintf("%s, %d requests", secs(m.times.median()), m.total())
	}
	for i, name := range []string{"regmend heal --from REG/REPO@DIGEST", "regmend heal --from oci:DIR"} {
		m := out[name]
		tr, rr := float64(m.times.median())/float64(fm.times.median()), float64(m.total())/float64(fm.total())
		ratios := fmt.Sprintf("time %.2fx, requests %.2fx", tr, rr)
		if !m.repairedAll() {
			ratios += fmt.Sprintf(" (repaired %d/%d runs)", m.repaired, m.attempts)
		}
		if i == 0 {
			rep.claim(fmt.Sprintf("%s (`%s`)", claim, fastest), figures(m), figures(fm), ratios, goal, m.repairedAll() && tr < 1 && rr < 1)
			continue
		}
		// The layout is on disk: no source registry to ask, so its
		// requests are the destination's alone.
		rep.info(fmt.Sprintf("… `%s` (the source on local disk) vs the same", name), figures(m), figures(fm), ratios)
	}
}
