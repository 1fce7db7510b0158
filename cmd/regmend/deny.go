package main

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/resolver/heal"
)

const flagDenyFile = "deny-file"

// denyFileFlag is --deny-file, on serve, heal and check.
func denyFileFlag() cli.Flag {
	return &cli.StringFlag{Name: flagDenyFile, Usage: "deny `file`: what was deleted on purpose, never served or re-pushed " +
		"(a line each: sha256:<hex> | REGISTRY/REPO | REGISTRY/REPO@sha256:<hex>; # comments); default: -c's deny_file"}
}

// loadDeny reads --deny-file, else the deny_file of the -c config, once:
// heal and check run once, they do not follow it. nil when neither is set.
// A missing or bad file is a usage error naming the file and line.
func loadDeny(ctx context.Context, cmd *cli.Command) (*deny.List, error) {
	path := cmd.String(flagDenyFile)
	if cfgPath := cmd.String(flagConfig); path == "" && cfgPath != "" {
		cfg, err := daemon.LoadFile(cfgPath)
		if err != nil {
			return nil, &exitCode{code: exitUsage, err: err}
		}
		path = cfg.DenyFile
	}
	if path == "" {
		return nil, nil
	}
	l, err := deny.ReadFile(ctx, path)
	if err != nil {
		return nil, &exitCode{code: exitUsage, err: fmt.Errorf("--%s: %w", flagDenyFile, err)}
	}
	return l, nil
}

// denyOptions is the Healer's option for l; none when l is nil.
func denyOptions(l *deny.List) []heal.HealerOption {
	if l == nil {
		return nil
	}
	return []heal.HealerOption{heal.WithDeny(l)}
}

// refuseDenied refuses, before anything is contacted, a reference the list
// names: its digest, or its whole repository. (A tag whose image a digest
// entry names is refused by the heal itself.) The error exits 1.
func refuseDenied(l *deny.List, ref imageRef) error {
	if l == nil {
		return nil
	}
	if entry, ok := l.Denied(ref.Registry, ref.Repository, ref.Digest); ok {
		return fmt.Errorf("%s: denied by the deny list entry %q: not healed: %w", ref.raw, entry, errdefs.ErrFailedPrecondition)
	}
	return nil
}
