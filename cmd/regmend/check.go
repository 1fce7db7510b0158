package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	units "github.com/docker/go-units"
	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/internal/ctrconf"
	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "check that registries still hold the images this node uses (preflight before an upgrade)",
		ArgsUsage: "[REGISTRY/REPO@DIGEST | REGISTRY/REPO:TAG ...] | --from SPEC REGISTRY/REPO",
		Description: `Without an image reference, checks every image record in the containerd
namespace whose registry is named by --registry (records naming the same
image by tag and by digest are checked once). Each image is:

  healthy      the registry holds it
  healable     the registry lacks parts this node holds (--fix re-pushes them)
  broken       the registry lacks parts this node lacks too (any healable part
               is still listed, and --fix still pushes it)
  unreachable  the registry did not answer, or refused to

With --deny-file, what the file names counts as broken (its parts are listed
as denied, with the entry) and --fix never pushes it.

A broken image whose only missing parts are layers this node deleted after
unpacking them (the manifests naming them are here) is shown as "layers
discarded after unpack (discard_unpacked_layers)": that is what containerd's
CRI setting discard_unpacked_layers = true leaves. Before checking, the
containerd config is read and each setting that defeats regmend is named on
stderr with its fix.

With --from SPEC (as heal takes it: oci:DIR[:NAME] or REGISTRY/REPO[:TAG|@DIGEST],
repeatable), checks what REGISTRY/REPO lacks of the image SPEC names,
against what the sources hold, without asking containerd.

Exit status: 0 every image healthy (after --fix: healed), 3 damage found or
left after --fix, 1 an error (an unreachable registry, a failed fix), 2 usage.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "registry", Usage: "check images of `host[:port]` (repeatable; required without an image reference, unless -c names a config file with registries)"},
			&cli.BoolFlag{Name: "fix", Usage: "heal every damaged image, leaves first, with a retention tag for orphans; report the state after"},
			&cli.BoolFlag{Name: "deep", Usage: "also ask the registry for every config and layer; the default checks every manifest and index and trusts the registry to keep the blobs of manifests it holds"},
			&cli.IntFlag{Name: "concurrency", Value: 4, Usage: "images checked at once"},
			&cli.FloatFlag{Name: "rate", Usage: "most registry requests per second, bursts of as many (0: unlimited)"},
			containerdConfigFlag("containerd's config `file`, checked first for settings that defeat regmend (warnings only)"),
			denyFileFlag(),
			outputFlag(),
			fromFlag(),
		},
		Action: runCheck,
	}
}

func runCheck(ctx context.Context, cmd *cli.Command) error {
	regs, from := cmd.StringSlice("registry"), cmd.StringSlice("from")
	if path := cmd.String(flagConfig); len(regs) == 0 && len(from) == 0 && path != "" {
		cfg, err := daemon.LoadFile(path)
		if err != nil {
			return &exitCode{code: exitUsage, err: err}
		}
		regs = cfg.Registries
	}
	for _, r := range regs {
		if err := imageref.ValidateRegistry(r); err != nil {
			return &exitCode{code: exitUsage, err: err}
		}
	}
	// --from first: with no destination it needs one, not --registry.
	if len(from) > 0 && cmd.NArg() != 1 {
		return usageError("check --from takes one destination REGISTRY/REPO, got %d", cmd.NArg())
	}
	if cmd.NArg() == 0 && len(regs) == 0 {
		return usageError("check without an image reference checks every image of the registries named by --registry: name at least one (e.g. --registry edge:5000)")
	}
	parse := parseRef
	if len(from) > 0 {
		parse = parseDest
	}
	var refs []imageRef
	for _, raw := range cmd.Args().Slice() {
		ref, err := parse(raw)
		if err != nil {
			return err
		}
		if len(regs) > 0 && !slices.Contains(regs, ref.Registry) {
			return usageError("image %s is not of the registries named by --registry %v", raw, regs)
		}
		refs = append(refs, ref)
	}
	conc, rate := int(cmd.Int("concurrency")), cmd.Float("rate")
	if conc < 1 || rate < 0 || math.IsNaN(rate) {
		return usageError("--concurrency must be at least 1 and --rate at least 0")
	}
	denied, err := loadDeny(ctx, cmd) // deny.go
	if err != nil {
		return err
	}
	if len(from) == 0 {
		warnContainerdTraps(ctx, cmd, ctrconf.WithRegistries(regs...))
	}
	opts := []registry.Option{registry.WithRegistries(regs...)}
	if rate > 0 {
		opts = append(opts, registry.WithRequestRate(rate, max(1, int(math.Ceil(rate)))))
	}
	rem, err := remote(cmd, opts...)
	if err != nil {
		return err
	}
	var (
		n     *node
		srcs  *fromSources
		store content.Store
	)
	if len(from) == 0 { // --from reads no containerd
		if n, ctx, err = connect(ctx, cmd); err != nil {
			return err
		}
		defer n.Close()
		store = n.store()
	} else if srcs, err = openFrom(ctx, from, rem, refs[0]); err != nil {
		return err
	} else {
		store = srcs.store()
	}
	healer, err := heal.NewHealer(store, rem, append([]heal.HealerOption{heal.WithDeepCheck(cmd.Bool("deep"))}, denyOptions(denied)...)...)
	if err != nil {
		return err
	}
	var found checkTargets
	switch {
	case srcs != nil:
		err = found.fromSources(ctx, srcs, refs[0])
	case len(refs) > 0:
		err = found.fromRefs(ctx, n, refs)
	default:
		err = found.fromRecords(ctx, n, regs)
	}
	if err != nil {
		return err
	}
	if len(found.targets) == 0 && n != nil {
		fmt.Fprintf(os.Stderr, "regmend: no images of %v in containerd namespace %s\n", regs, n.ns)
	}
	checkOpts := []heal.CheckOption{heal.WithFix(cmd.Bool("fix")), heal.WithImageConcurrency(conc)}
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	if tty {
		checkOpts = append(checkOpts, heal.WithProgress(progress(os.Stderr)))
	}
	rep, err := healer.Check(ctx, found.targets, checkOpts...)
	if tty {
		fmt.Fprint(os.Stderr, "\r\033[K") // clear the progress line
	}
	if err != nil {
		return err
	}
	for i := range rep.Images {
		rep.Images[i].Names = found.names[i]
	}
	if err := printCheck(cmd.Root().Writer, cmd.String(flagOutput) == "json", rep, srcs == nil); err != nil {
		return err
	}
	return checkStatus(rep)
}

// checkStatus turns a report into the exit status: an error outranks damage.
func checkStatus(rep *heal.CheckReport) error {
	after := ""
	if rep.Fix {
		after = " after --fix"
	}
	switch {
	case rep.Failed() > 0:
		return fmt.Errorf("%d of %s unreachable or not fixed", rep.Failed(), imageCount(len(rep.Images)))
	case rep.Damaged() > 0:
		return &exitCode{code: exitDamaged, err: fmt.Errorf("%d of %s damaged%s", rep.Damaged(), imageCount(len(rep.Images)), after)}
	}
	return nil
}

func imageCount(n int) string {
	if n == 1 {
		return "1 image"
	}
	return fmt.Sprintf("%d images", n)
}

// checkTargets are the images to check, each once, with the names this
// node knows it by.
type checkTargets struct {
	targets []heal.Target
	names   [][]string
	index   map[string]int
}

func (c *checkTargets) add(t heal.Target, name string) {
	if c.index == nil {
		c.index = map[string]int{}
	}
	key := t.String() // registry/repo@digest
	i, ok := c.index[key]
	if !ok {
		i = len(c.targets)
		c.index[key] = i
		c.targets = append(c.targets, t)
		c.names = append(c.names, nil)
	}
	if !slices.Contains(c.names[i], name) {
		c.names[i] = append(c.names[i], name)
		// Tags first: people know images by them.
		slices.SortFunc(c.names[i], func(a, b string) int {
			return cmp.Or(cmp.Compare(strings.Count(a, "@"), strings.Count(b, "@")), strings.Compare(a, b))
		})
	}
}

// fromSources takes the image the --from sources name, in dest.
func (c *checkTargets) fromSources(ctx context.Context, srcs *fromSources, dest imageRef) error {
	t, err := srcs.target(ctx, dest)
	if err != nil {
		return err
	}
	// No names: the image is known by its digest in dest.
	c.targets, c.names = append(c.targets, t), append(c.names, nil)
	return nil
}

func (c *checkTargets) fromRefs(ctx context.Context, n *node, refs []imageRef) error {
	for _, ref := range refs {
		ts, err := n.targets(ctx, ref)
		if err != nil {
			return err
		}
		for _, t := range ts {
			c.add(t, ref.raw)
		}
	}
	return nil
}

// fromRecords takes every image record of the namespace whose registry is
// one of regs.
func (c *checkTargets) fromRecords(ctx context.Context, n *node, regs []string) error {
	targets, err := content.ImageTargets(ctx, n.images(), regs)
	if err != nil {
		return fmt.Errorf("containerd namespace %s: %w", n.ns, err)
	}
	for _, img := range targets {
		for _, name := range img.Names {
			c.add(heal.TargetOf(img), name)
		}
	}
	return nil
}

func progress(w io.Writer) func(done, total int, img *heal.ImageReport) {
	return func(done, total int, img *heal.ImageReport) {
		fmt.Fprintf(w, "\r\033[Kchecked %d/%d: %s %s", done, total, img.State, img.Image)
	}
}

// printCheck writes the report: one JSON document, or a table of images
// followed by the details of the damaged ones. node says the report is of
// this node's store, whose layers CRI may have discarded after unpack.
func printCheck(w io.Writer, asJSON bool, rep *heal.CheckReport, node bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(newCheckOutput(rep, node))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tIMAGE\tMISSING\tBYTES")
	for _, img := range rep.Images {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", shownState(img, node), shownName(img), len(img.Missing), units.HumanSize(float64(img.MissingBytes)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, img := range rep.Images {
		if img.Found != heal.StateHealthy {
			printDetails(w, img, node)
		}
	}
	var counts []string
	discarded := len(newCheckOutput(rep, node).LayersDiscarded)
	for _, s := range heal.States {
		n := rep.Counts[string(s)]
		if s == heal.StateBroken {
			n -= discarded
		}
		counts = append(counts, fmt.Sprintf("%d %s", n, s))
	}
	if discarded > 0 {
		counts = append(counts, fmt.Sprintf("%d %s", discarded, stateDiscarded))
	}
	after := ""
	if rep.Fix {
		after = " after --fix"
	}
	_, err := fmt.Fprintf(w, "\n%s%s: %s\n", imageCount(len(rep.Images)), after, strings.Join(counts, ", "))
	return err
}

func shownName(img heal.ImageReport) string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return img.Image
}

func shownState(img heal.ImageReport, node bool) string {
	if img.Fix != nil && img.Found != img.State && img.State == heal.StateHealthy {
		return "healed"
	}
	if node && layersDiscarded(img) {
		return stateDiscarded
	}
	return string(img.State)
}

func printDetails(w io.Writer, img heal.ImageReport, node bool) {
	fmt.Fprintf(w, "\n%s %s", shownState(img, node), img.Image)
	if names := slices.DeleteFunc(slices.Clone(img.Names), func(n string) bool { return n == img.Image }); len(names) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(names, ", "))
	}
	fmt.Fprintln(w)
	if img.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", img.Error)
	}
	if node && layersDiscarded(img) {
		fmt.Fprintln(w, "  this node deleted these layers after unpacking them (CRI discard_unpacked_layers = true) and the registry lacks them too: only a node or a publisher that still holds them can restore them")
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	line := func(label string, n heal.NodeResult) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", label, n.Kind, n.Digest, units.HumanSize(float64(n.Size)), platform(n.Platform), n.Reason)
	}
	if f := img.Fix; f != nil && len(f.Pushed)+len(f.Left) > 0 {
		for _, n := range f.Pushed {
			line(string(n.Status), n) // pushed or mounted
		}
		for _, n := range f.Left {
			line("left", n)
		}
	} else {
		for _, n := range img.Missing {
			line("missing", n)
		}
		for _, n := range img.Unhealable {
			line("unhealable", n)
		}
	}
	tw.Flush()
	if f := img.Fix; f != nil {
		for _, tag := range f.RetentionTags {
			fmt.Fprintf(w, "  retention tag %s/%s:%s keeps it from garbage collection\n", img.Target.Registry, img.Target.Repository, tag)
		}
		if f.Error != "" {
			fmt.Fprintf(w, "  fix failed: %s\n", f.Error)
		}
	}
}
