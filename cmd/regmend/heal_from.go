package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
)

// tagSettings reads --tag and --force-tag: a tag only with --from (its
// destination names the repository it goes in), force only with a tag.
func tagSettings(cmd *cli.Command, from []string) (string, error) {
	tag := cmd.String("tag")
	switch {
	case cmd.IsSet("tag") && len(from) == 0:
		return "", usageError("--tag goes with --from SPEC REGISTRY/REPO")
	case cmd.Bool("force-tag") && tag == "":
		return "", usageError("--force-tag goes with --tag NAME")
	case cmd.IsSet("tag"):
		if err := imageref.ValidateTag(tag); err != nil {
			return "", &exitCode{code: exitUsage, err: fmt.Errorf("--tag: %w", err)}
		}
	}
	return tag, nil
}

// healFrom heals dest from the --from sources: the root is what they
// name, every blob is read from the first of them that holds it, and
// containerd is never asked. Once the image is whole in dest, tag (when
// set) is bound to its root.
func healFrom(ctx context.Context, cmd *cli.Command, specs []string, dest imageRef, rem *registry.Remote, tag string, opts []heal.HealerOption) error {
	srcs, err := openFrom(ctx, specs, rem, dest)
	if err != nil {
		return err
	}
	t, err := srcs.target(ctx, dest)
	if err != nil {
		return err
	}
	healer, err := heal.NewHealer(srcs.store(), rem, opts...)
	if err != nil {
		return &exitCode{code: exitUsage, err: err}
	}
	out := newPrinter(cmd)
	force := cmd.Bool("force-tag")
	if cmd.Bool("dry-run") {
		plan, err := healer.Plan(ctx, t)
		if err != nil {
			return err
		}
		var tp *tagPlan
		if tag != "" {
			if tp, err = previewTag(ctx, healer, t, tag, force); err != nil {
				return err
			}
		}
		out.planFrom(plan, tp)
		return out.flush()
	}
	if tag != "" && !force {
		// Refused before anything is written: a root pushed and then
		// left untagged (retention is off for --tag) is the next GC's.
		if _, err := healer.PreviewTag(ctx, t, tag, false); err != nil {
			return err
		}
	}
	// With --tag and no --retain, the user's tag was to keep the root:
	// whenever it is not bound, a retention tag must.
	keep := tag != "" && !cmd.IsSet("retain")
	res, err := healer.Heal(ctx, t)
	switch {
	case errdefs.IsNotFound(err) && res != nil:
		// A tag would name an image dest does not hold whole.
		err = keepRoot(ctx, healer, t, res, keep, err)
		out.healedFrom(res, srcs, nil)
		if ferr := out.flush(); ferr != nil {
			return ferr
		}
		if tag != "" {
			err = fmt.Errorf("%w; tag %s not bound", err, tag)
		}
		return &exitCode{code: exitDamaged, err: fmt.Errorf("partly healed: %w", err)}
	case err != nil:
		if res != nil {
			err = keepRoot(ctx, healer, t, res, keep, err)
			out.healedFrom(res, srcs, nil)
		}
		return out.fail(err)
	}
	var bound *heal.TagBinding
	if tag != "" {
		b, err := healer.BindTag(ctx, t, tag, force)
		if err != nil {
			err = keepRoot(ctx, healer, t, res, keep, err)
			out.healedFrom(res, srcs, nil)
			return out.fail(err)
		}
		bound = &b
	}
	out.healedFrom(res, srcs, bound)
	return out.flush()
}

// keepRoot binds the root's retention tag (Healer.KeepRoot) when keep is
// set and the user's tag was not bound (cause says why). It returns cause,
// saying what was bound or that binding failed too.
func keepRoot(ctx context.Context, h *heal.Healer, t heal.Target, res *heal.Result, keep bool, cause error) error {
	if !keep {
		return cause
	}
	rt, err := h.KeepRoot(ctx, t, res)
	switch {
	case err != nil:
		return errors.Join(cause, err)
	case rt == "":
		return cause
	}
	return fmt.Errorf("%w; retention tag %s bound instead, so the next garbage collection keeps the root %s", cause, rt, t.Root.Digest)
}

// tagPlan is what a heal would do to --tag, as a dry run reports it:
// Refused, when the tag names another digest and --force-tag is unset,
// says so (Digest is then where it points).
type tagPlan struct {
	heal.TagBinding
	Refused string `json:"refused,omitempty"`
}

// previewTag asks, reading only, what binding tag would do.
func previewTag(ctx context.Context, h *heal.Healer, t heal.Target, tag string, force bool) (*tagPlan, error) {
	b, err := h.PreviewTag(ctx, t, tag, force)
	switch {
	case errdefs.IsFailedPrecondition(err):
		return &tagPlan{TagBinding: b, Refused: err.Error()}, nil
	case err != nil:
		return nil, err
	}
	return &tagPlan{TagBinding: b}, nil
}

// planFrom prints a dry run's plan and what it would do to the tag.
func (p *printer) planFrom(plan *heal.Plan, tp *tagPlan) {
	if p.json {
		p.items = append(p.items, planOutput{Target: plan.Target, DryRun: true, Nodes: plan.Nodes(), Tag: tp})
		return
	}
	p.plan(plan)
	if tp == nil {
		return
	}
	name := plan.Target.Registry + "/" + plan.Target.Repository + ":" + tp.Tag
	switch {
	case tp.Refused != "":
		fmt.Fprintf(p.w, "tag %s points at %s: would be refused (--force-tag moves it)\n", name, tp.Previous)
	case tp.Unchanged:
		fmt.Fprintf(p.w, "tag %s already points at %s: would be left unchanged\n", name, tp.Digest)
	case tp.Moved:
		fmt.Fprintf(p.w, "tag %s would be moved from %s to %s (--force-tag)\n", name, tp.Previous, tp.Digest)
	default:
		fmt.Fprintf(p.w, "tag %s would be bound to %s\n", name, tp.Digest)
	}
}

// healFromOutput is a heal --from as -o json prints it: the heal's
// result, the sources read and the tag bound.
type healFromOutput struct {
	*heal.Result
	From []string         `json:"from"`
	Tag  *heal.TagBinding `json:"tag,omitempty"`
}

func (p *printer) healedFrom(res *heal.Result, srcs *fromSources, b *heal.TagBinding) {
	if p.json {
		p.items = append(p.items, healFromOutput{Result: res, From: srcs.specs, Tag: b})
		return
	}
	fmt.Fprintf(p.w, "reading from %s\n", srcs)
	p.result(res)
	if b == nil {
		return
	}
	name := res.Target.Registry + "/" + res.Target.Repository + ":" + b.Tag
	switch {
	case b.Unchanged:
		fmt.Fprintf(p.w, "tag %s already points at %s: left unchanged\n", name, b.Digest)
	case b.Moved:
		fmt.Fprintf(p.w, "tag %s moved from %s to %s (--force-tag)\n", name, b.Previous, b.Digest)
	default:
		fmt.Fprintf(p.w, "tag %s bound to %s\n", name, b.Digest)
	}
}
