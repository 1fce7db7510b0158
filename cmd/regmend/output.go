package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/resolver/heal"
)

// printer writes results as a table for people or JSON for scripts.
type printer struct {
	w     io.Writer
	json  bool
	items []any
}

func newPrinter(cmd *cli.Command) *printer {
	return &printer{w: cmd.Root().Writer, json: cmd.String(flagOutput) == "json"}
}

type planOutput struct {
	Target heal.Target       `json:"target"`
	DryRun bool              `json:"dryRun"`
	Nodes  []heal.NodeResult `json:"nodes"`
	Tag    *tagPlan          `json:"tag,omitempty"` // heal --from --tag (heal_from.go)
}

func (p *printer) plan(plan *heal.Plan) {
	if p.json {
		p.items = append(p.items, planOutput{Target: plan.Target, DryRun: true, Nodes: plan.Nodes()})
		return
	}
	fmt.Fprintf(p.w, "plan for %s: %d to push, %d unhealable (dry run: nothing written)\n",
		plan.Target, plan.Count(heal.StatusMissing), plan.Count(heal.StatusUnhealable))
	p.nodes(plan.Nodes())
}

func (p *printer) result(res *heal.Result) {
	if p.json {
		p.items = append(p.items, res)
		return
	}
	verb := "healed"
	if !res.Healed() {
		verb = "partly healed"
	} else if res.Pushed+res.Mounted == 0 {
		verb = "nothing to do for"
	}
	denied := ""
	if res.Denied > 0 {
		denied = fmt.Sprintf(", %d denied by the deny list", res.Denied)
	}
	fmt.Fprintf(p.w, "%s %s: %d pushed (%s), %d mounted, %d present, %d unhealable%s, %d requests in %s\n",
		verb, res.Target, res.Pushed, units.HumanSize(float64(res.BytesPushed)), res.Mounted, res.Present,
		res.Unhealable, denied, res.Requests, res.Duration.Round(time.Millisecond))
	for _, tag := range res.RetentionTags {
		fmt.Fprintf(p.w, "retention tag %s/%s:%s keeps it from garbage collection\n", res.Target.Registry, res.Target.Repository, tag)
	}
	p.nodes(res.Nodes)
}

func (p *printer) nodes(nodes []heal.NodeResult) {
	tw := tabwriter.NewWriter(p.w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tKIND\tDIGEST\tSIZE\tPLATFORM\tLOCAL\tREASON")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Status, n.Kind, n.Digest, units.HumanSize(float64(n.Size)),
			platform(n.Platform), yesNo(n.Local), n.Reason)
	}
	tw.Flush()
}

// fail returns err once what was collected is written: a script reading
// -o json still gets the results of a run that failed (what was pushed
// before the failure). With nothing collected nothing is written.
func (p *printer) fail(err error) error {
	if len(p.items) == 0 {
		return err
	}
	if ferr := p.flush(); ferr != nil {
		return errors.Join(err, ferr)
	}
	return err
}

// flush writes collected JSON as one array.
func (p *printer) flush() error {
	if !p.json {
		return nil
	}
	if p.items == nil {
		p.items = []any{}
	}
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	return enc.Encode(p.items)
}

func platform(p *ocispec.Platform) string {
	if p == nil {
		return "-"
	}
	s := []string{p.OS, p.Architecture}
	if p.Variant != "" {
		s = append(s, p.Variant)
	}
	return strings.Join(s, "/")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
