package bench

import (
	"context"
	"debug/buildinfo"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

var (
	benchTable = flag.Bool("benchtable", false, "run the side-by-side benchmarks against real components and write RESULTS.md (make bench)")
	benchRuns  = flag.Int("benchruns", 7, "runs of each timed measurement; the table shows the median")
	benchOut   = flag.String("benchout", "RESULTS.md", "file the table is written to, relative to test/bench")
	benchOnly  = flag.String("benchonly", "", "run only these comma-separated scenarios (heal, tune, steps, memory, pull, check, peer, holders, publisher, micro); the table is printed, not written")
)

// TestBenchTable runs every side-by-side measurement and writes the table.
// It is skipped unless -benchtable is given.
func TestBenchTable(t *testing.T) {
	if !*benchTable {
		t.Skip("side-by-side benchmarks run only with -benchtable (make bench)")
	}
	harness.RequireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	rep := &report{runs: *benchRuns}
	scenarios := []struct {
		name string
		fn   func(context.Context, *testing.T, *report)
	}{
		{"heal", benchHeal},
		{"tune", benchTune},
		{"steps", benchSteps},
		{"memory", benchMemory},
		{"pull", benchPull},
		{"check", benchCheck},
		{"peer", benchPeer},
		{"holders", benchHolders},
		{"publisher", benchPublisher},
		{"micro", func(_ context.Context, t *testing.T, rep *report) { benchMicro(t, rep) }},
	}
	ok := true
	for _, s := range scenarios {
		if *benchOnly != "" && !slices.Contains(strings.Split(*benchOnly, ","), s.name) {
			continue
		}
		began := time.Now()
		ok = t.Run(s.name, func(t *testing.T) { s.fn(ctx, t, rep) }) && ok
		t.Logf("%s: %s", s.name, time.Since(began).Round(time.Second))
	}
	rep.took = time.Since(start)
	md := rep.markdown(describeMachine(ctx))
	fmt.Print("\n" + md)
	if !ok {
		t.Fatalf("a scenario failed; %s not written", *benchOut)
	}
	if *benchOnly != "" {
		t.Logf("-benchonly: %s not written", *benchOut)
		return
	}
	if err := os.WriteFile(*benchOut, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s in %s", *benchOut, rep.took.Round(time.Second))
}

// report collects the table.
type report struct {
	runs     int
	summary  [][]string // claim, regmend, baseline, ratio, goal, verdict
	sections []section
	took     time.Duration
}

type section struct {
	title  string
	intro  string
	header []string
	rows   [][]string
	notes  []string
}

func (r *report) claim(claim, regmend, baseline, ratio, goal string, met bool) {
	verdict := "met"
	if !met {
		verdict = "**missed**"
	}
	r.summary = append(r.summary, []string{claim, regmend, baseline, ratio, goal, verdict})
}

func (r *report) todo(claim, measured, goal string) {
	r.summary = append(r.summary, []string{claim, measured, "", "", goal, "TODO"})
}

func (r *report) info(claim, regmend, baseline, ratio string) {
	r.summary = append(r.summary, []string{claim, regmend, baseline, ratio, "none set", "measured"})
}

func (r *report) add(s section) { r.sections = append(r.sections, s) }

func (r *report) markdown(machine [][2]string) string {
	var b strings.Builder
	b.WriteString("# regmend benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`go test ./test/bench -run TestBenchTable -benchtable`) on %s; the run took %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), r.took.Round(time.Second))
	fmt.Fprintf(&b, "Every tool runs on this machine, side by side, against the same kind of real registry and containerd; times are the median of %d runs (min–max in brackets), interleaved tool by tool, and include process start. Ratios are regmend / baseline: below 1 regmend is faster.\n\n", r.runs)
	b.WriteString("## Machine\n\n")
	table(&b, []string{"", ""}, pairs(machine))
	b.WriteString("\n## Goals\n\n")
	table(&b, []string{"claim", "regmend", "baseline", "ratio", "goal", "result"}, r.summary)
	for _, s := range r.sections {
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		if s.intro != "" {
			b.WriteString(s.intro + "\n\n")
		}
		table(&b, s.header, s.rows)
		for _, n := range s.notes {
			b.WriteString("\n" + n + "\n")
		}
	}
	return b.String()
}

func pairs(p [][2]string) [][]string {
	out := make([][]string, len(p))
	for i, kv := range p {
		out[i] = []string{kv[0], kv[1]}
	}
	return out
}

func table(b *strings.Builder, header []string, rows [][]string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
}

// describeMachine says what the numbers were measured on.
func describeMachine(ctx context.Context) [][2]string {
	out := [][2]string{
		{"CPU", firstField("/proc/cpuinfo", "model name")},
		{"cores", fmt.Sprintf("%d (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0))},
		{"memory", memTotal()},
		{"kernel", strings.TrimSpace(readFile("/proc/sys/kernel/osrelease"))},
		{"OS", strings.Trim(firstFieldSep("/etc/os-release", "PRETTY_NAME", "="), `"`)},
		{"Go", runtime.Version()},
	}
	for _, tool := range []string{harness.ToolContainerd, harness.ToolCtr, harness.ToolRegistry, harness.ToolCrictl} {
		out = append(out, [2]string{tool, moduleVersion(filepath.Join(harness.ToolsDir(), tool))})
	}
	for _, tool := range []string{toolRegctl, toolCrane} {
		out = append(out, [2]string{tool, moduleVersion(filepath.Join(harness.ToolsDir(), tool))})
	}
	sk, err := exec.CommandContext(ctx, toolSkopeo, "--version").Output()
	if err != nil {
		sk = []byte("not installed (" + err.Error() + ")")
	}
	out = append(out, [2]string{toolSkopeo, strings.TrimSpace(string(sk)) + " (Debian)"})
	v, _ := exec.CommandContext(ctx, filepath.Join(harness.BinDir(), "regmend"), "version").Output()
	out = append(out, [2]string{"regmend", strings.TrimSpace(string(v))})
	return out
}

// moduleVersion names the module and version a Go binary was built from.
func moduleVersion(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	best := bi.Main
	for _, d := range bi.Deps {
		if strings.HasPrefix(bi.Path, d.Path+"/") && len(d.Path) > len(best.Path) {
			best = *d
		}
	}
	return fmt.Sprintf("%s %s (%s)", best.Path, best.Version, bi.GoVersion)
}

func memTotal() string {
	var kib int64
	if _, err := fmt.Sscanf(firstField("/proc/meminfo", "MemTotal"), "%d kB", &kib); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func firstField(path, key string) string { return firstFieldSep(path, key, ":") }

func firstFieldSep(path, key, sep string) string {
	for _, line := range strings.Split(readFile(path), "\n") {
		if k, v, ok := strings.Cut(line, sep); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
