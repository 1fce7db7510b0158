package main

import (
	"context"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/hostsfile"
	"github.com/regmend/regmend/internal/secret"
)

// runHostsRemove is `regmend hosts --remove REGISTRY...` for one registry:
// the uninstall path.
func runHostsRemove(ctx context.Context, cmd *cli.Command, registry string) error {
	for _, f := range []string{"mirror-token-file", "server-scheme"} {
		if cmd.IsSet(f) {
			return usageError("--remove takes no --%s", f)
		}
	}
	var opts []hostsfile.Option
	if cmd.Bool("dry-run") {
		opts = append(opts, hostsfile.WithDryRun())
	}
	res, err := hostsfile.Remove(ctx, cmd.String(flagHostsDir), registry, cmd.String("mirror"), opts...)
	if errdefs.IsInvalidArgument(err) {
		return &exitCode{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	verb := map[hostsfile.Action]string{
		hostsfile.Removed:   "removed",
		hostsfile.Updated:   "removed regmend from",
		hostsfile.Unchanged: "no regmend entry in",
	}[res.Action]
	// The printed content no longer holds the token: nothing to redact.
	printHostsResult(cmd.Root().Writer, res, verb, cmd.Bool("dry-run"), secret.File{})
	return nil
}
