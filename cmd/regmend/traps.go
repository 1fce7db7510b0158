package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/ctrconf"
)

// containerdConfigFlag names containerd's config file for hosts and check.
func containerdConfigFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "containerd-config", Value: ctrconf.DefaultConfigFile, Usage: usage}
}

// warnContainerdTraps prints each containerd setting that defeats regmend
// (internal/ctrconf) as a warning, with its file, line and fix. It never
// changes the command's exit status.
func warnContainerdTraps(ctx context.Context, cmd *cli.Command, opts ...ctrconf.Option) {
	w := errWriter(cmd)
	findings, err := ctrconf.Check(ctx, append([]ctrconf.Option{ctrconf.WithConfigFile(cmd.String("containerd-config")),
		ctrconf.WithHostsDir(cmd.String(flagHostsDir))}, opts...)...)
	for _, f := range findings {
		fmt.Fprintf(w, "warning: containerd: %s\n", f)
	}
	if err != nil {
		fmt.Fprintf(w, "warning: cannot check containerd's config: %v\n", err)
	}
}

func errWriter(cmd *cli.Command) io.Writer {
	if w := cmd.Root().ErrWriter; w != nil {
		return w
	}
	return os.Stderr
}
