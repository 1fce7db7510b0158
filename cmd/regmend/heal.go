package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	units "github.com/docker/go-units"
	"golang.org/x/term"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/resolver/heal"
)

func healCommand() *cli.Command {
	return &cli.Command{
		Name:      "heal",
		Usage:     "re-push an image the registry lost, leaves first, from containerd's content store or from --from sources",
		ArgsUsage: "REGISTRY/REPO@DIGEST | REGISTRY/REPO:TAG | --from SPEC REGISTRY/REPO",
		Description: `A digest is healed through the local indexes that reference it, so a lost
child manifest is restored under its index; only content this node pulled
from REPO is pushed into REPO. A tag names the local image record. An orphan (a root the registry no longer holds) gets a retention tag
sha256-<hex>.regmend so the next garbage collection keeps it.

With --from SPEC, the image is what SPEC names and containerd is not asked:
oci:DIR[:NAME] reads an OCI image layout (NAME an index.json ref.name or a
digest; without it, the layout's only image), REGISTRY/REPO:TAG or
REGISTRY/REPO@DIGEST another registry. Repeat --from to read each blob from
the first that holds it; the root is the first one's that resolves, and
when any --from names an image (NAME, TAG or DIGEST) only those choose it:
the others (a layout's only image, a bare REGISTRY/REPO) lend blobs. A
source that fails otherwise than by lacking the image stops the choice. The destination is
REGISTRY/REPO only. --tag NAME binds NAME there to the root once the image
is whole; a tag already naming another digest is refused (exit 1, naming
it) before anything is pushed, unless --force-tag. With --tag no retention
tag is bound (the tag keeps the root) unless --retain is given, or the tag
could not be bound after the root was pushed: then the retention tag keeps it.

With --deny-file, what the file names is never pushed: a denied reference
or root is refused (exit 1, naming the entry), a denied node of an allowed
index is skipped and listed as denied (exit 3).

Exit status: 0 healed or nothing to do, 3 partly healed (what is absent both
here and in the registry is listed), 1 error, 2 usage.`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan; write nothing"},
			&cli.StringFlag{Name: "retain", Value: "tag", Usage: "retention for a re-pushed orphan: `tag` or none (with --tag: none unless given)"},
			&cli.IntFlag{Name: "concurrency", Value: heal.DefaultConcurrency, Usage: "presence checks and manifest PUTs in flight at once"},
			&cli.IntFlag{Name: "uploads", Value: heal.DefaultUploads, Usage: "blob uploads in flight at once"},
			denyFileFlag(),
			outputFlag(),
			fromFlag(),
		}, tagFlags()...),
		Action: runHeal,
	}
}

func runHeal(ctx context.Context, cmd *cli.Command) error {
	from := cmd.StringSlice("from")
	if cmd.NArg() != 1 {
		return usageError("heal takes one image reference, got %d", cmd.NArg())
	}
	parse := parseRef
	if len(from) > 0 {
		parse = parseDest
	}
	ref, err := parse(cmd.Args().First())
	if err != nil {
		return err
	}
	tag, err := tagSettings(cmd, from)
	if err != nil {
		return err
	}
	retain, err := heal.ParseRetention(cmd.String("retain"))
	if err != nil {
		return usageError("--retain: %v", err)
	}
	if tag != "" && !cmd.IsSet("retain") {
		retain = heal.RetainNone // the user's tag keeps the root
	}
	denied, err := loadDeny(ctx, cmd) // deny.go
	if err != nil {
		return err
	}
	if err := refuseDenied(denied, ref); err != nil {
		return err
	}
	var n *node
	if len(from) == 0 { // --from reads no containerd
		if n, ctx, err = connect(ctx, cmd); err != nil {
			return err
		}
		defer n.Close()
	}
	rem, err := remote(cmd)
	if err != nil {
		return err
	}
	opts := []heal.HealerOption{heal.WithRetention(retain), heal.WithConcurrency(int(cmd.Int("concurrency"))), heal.WithUploads(int(cmd.Int("uploads")))}
	opts = append(opts, denyOptions(denied)...)
	if term.IsTerminal(int(os.Stderr.Fd())) {
		opts = append(opts, heal.WithPushProgress(func(p heal.Progress) {
			fmt.Fprintf(os.Stderr, "\r\033[Kpushing %s: %d/%d, %s of %s", p.Target, p.Done, p.Total,
				units.HumanSize(float64(p.BytesDone)), units.HumanSize(float64(p.BytesTotal)))
			if p.Done == p.Total {
				fmt.Fprintln(os.Stderr)
			}
		}))
	}
	if len(from) > 0 {
		return healFrom(ctx, cmd, from, ref, rem, tag, opts)
	}
	healer, err := heal.NewHealer(n.store(), rem, opts...)
	if err != nil {
		return &exitCode{code: exitUsage, err: err}
	}
	targets, err := n.targets(ctx, ref)
	if err != nil {
		return err
	}
	out := newPrinter(cmd)
	var partial error
	for _, t := range targets {
		if cmd.Bool("dry-run") {
			plan, err := healer.Plan(ctx, t)
			if err != nil {
				return out.fail(err)
			}
			out.plan(plan)
			continue
		}
		res, err := healer.Heal(ctx, t)
		if res != nil {
			out.result(res)
		}
		switch {
		case errdefs.IsNotFound(err) && res != nil:
			partial = errors.Join(partial, err)
		case err != nil:
			return out.fail(err) // with the results so far, this one's too
		}
	}
	if err := out.flush(); err != nil {
		return err
	}
	if partial != nil {
		return &exitCode{code: exitDamaged, err: fmt.Errorf("partly healed: %w", partial)}
	}
	return nil
}
