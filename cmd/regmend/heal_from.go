package main

import (
	"context"
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
	if cmd.Bool("dry-run") {
		plan, err := healer.Plan(ctx, t)
		if err != nil {
			return err
		}
		out.plan(plan)
		return out.flush()
	}
	res, err := healer.Heal(ctx, t)
	switch {
	case errdefs.IsNotFound(err) && res != nil:
		// A tag would name an image dest does not hold whole.
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
			out.healedFrom(res, srcs, nil)
		}
		return err
	}
	var bound *heal.TagBinding
	if tag != "" {
		b, err := healer.BindTag(ctx, t, tag, cmd.Bool("force-tag"))
		if err != nil {
			out.healedFrom(res, srcs, nil)
			if ferr := out.flush(); ferr != nil {
				return ferr
			}
			return err
		}
		bound = &b
	}
	out.healedFrom(res, srcs, bound)
	return out.flush()
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
