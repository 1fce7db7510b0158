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
		Usage:     "re-push an image the registry lost, leaves first, from containerd's content store",
		ArgsUsage: "REGISTRY/REPO@DIGEST | REGISTRY/REPO:TAG",
		Description: `A digest is healed through the local indexes that reference it, so a lost
child manifest is restored under its index; only content this node pulled
from REPO is pushed into REPO. A tag names the local image record. An orphan (a root the registry no longer holds) gets a retention tag
sha256-<hex>.regmend so the next garbage collection keeps it.

With --deny-file, what the file names is never pushed: a denied reference
or root is refused (exit 1, naming the entry), a denied node of an allowed
index is skipped and listed as denied (exit 3).

Exit status: 0 healed or nothing to do, 3 partly healed (what is absent both
here and in the registry is listed), 1 error, 2 usage.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan; write nothing"},
			&cli.StringFlag{Name: "retain", Value: "tag", Usage: "retention for a re-pushed orphan: `tag` or none"},
			&cli.IntFlag{Name: "concurrency", Value: heal.DefaultConcurrency, Usage: "presence checks and manifest PUTs in flight at once"},
			&cli.IntFlag{Name: "uploads", Value: heal.DefaultUploads, Usage: "blob uploads in flight at once"},
			denyFileFlag(),
			outputFlag(),
		},
		Action: runHeal,
	}
}

func runHeal(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() != 1 {
		return usageError("heal takes one image reference, got %d", cmd.NArg())
	}
	ref, err := parseRef(cmd.Args().First())
	if err != nil {
		return err
	}
	retain, err := heal.ParseRetention(cmd.String("retain"))
	if err != nil {
		return usageError("--retain: %v", err)
	}
	denied, err := loadDeny(ctx, cmd) // deny.go
	if err != nil {
		return err
	}
	if err := refuseDenied(denied, ref); err != nil {
		return err
	}
	n, ctx, err := connect(ctx, cmd)
	if err != nil {
		return err
	}
	defer n.Close()
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
				return err
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
			return err
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
