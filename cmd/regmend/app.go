package main

import (
	"context"
	"fmt"

	"github.com/containerd/log"

	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/cmd/regmend/internal/version"
)

// Global flag names, as ctr spells them.
const (
	flagAddress    = "address"
	flagNamespace  = "namespace"
	flagHostsDir   = "hosts-dir"
	flagAuthFile   = "auth-file"
	flagConfig     = "config"
	flagOutput     = "output"
	flagLogLevel   = "log-level"
	flagContentDir = "content-dir"
)

func app() *cli.Command {
	root := &cli.Command{
		Name:    "regmend",
		Usage:   "heal an OCI registry from the content containerd already holds",
		Version: version.Version,
		Description: `When registry garbage collection reaps a manifest that nodes still use,
containerd's next pull of that digest fails with "not found". regmend serves
the content from the node's containerd content store and re-pushes it, leaves
first, so every node can pull it again.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagAddress, Aliases: []string{"a"}, Value: "/run/containerd/containerd.sock", Usage: "containerd `socket` address", Sources: cli.EnvVars("CONTAINERD_ADDRESS")},
			&cli.StringFlag{Name: flagNamespace, Aliases: []string{"n"}, Value: "k8s.io", Usage: "containerd `namespace` holding the images", Sources: cli.EnvVars("CONTAINERD_NAMESPACE")},
			&cli.StringFlag{Name: flagHostsDir, Value: "/etc/containerd/certs.d", Usage: "registry host configuration `dir` (containerd's config_path)"},
			&cli.StringFlag{Name: flagAuthFile, Usage: "docker-style config.json with registry `credentials`", Sources: cli.EnvVars("REGMEND_AUTH_FILE")},
			&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, Usage: "regmend TOML config `file` (serve and check)"},
			&cli.StringFlag{Name: flagContentDir, Usage: "read blobs from containerd's content `dir` (default: ask containerd; \"none\": only through containerd's API); an unreadable one falls back to the API"},
			&cli.StringFlag{Name: flagLogLevel, Usage: "log `level`: debug, info, warn, error (default: info for serve, warn otherwise)"},
		},
		Before:       setLogLevel,
		OnUsageError: onUsageError,
		Commands: []*cli.Command{
			healCommand(),
			inspectCommand(),
			serveCommand(),
			hostsCommand(),
			checkCommand(),
			versionCommand(),
		},
	}
	for _, c := range root.Commands {
		c.OnUsageError = onUsageError
	}
	return root
}

// setLogLevel applies --log-level. The one-shot commands log only warnings
// by default, as their results go to stdout; serve raises it to info.
func setLogLevel(ctx context.Context, cmd *cli.Command) (context.Context, error) {
	level := cmd.String(flagLogLevel)
	if level == "" {
		level = "warn"
	}
	if err := log.SetLevel(level); err != nil {
		return ctx, usageError("--log-level %q: want debug, info, warn or error", level)
	}
	return ctx, nil
}

func onUsageError(_ context.Context, _ *cli.Command, err error, _ bool) error {
	return usageError("%v", err)
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(_ context.Context, cmd *cli.Command) error {
			fmt.Fprintf(cmd.Root().Writer, "regmend %s\n", version.Version)
			return nil
		},
	}
}

func outputFlag() cli.Flag {
	return &cli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Value: "table", Usage: "output `format`: table or json",
		Validator: func(s string) error {
			if s != "table" && s != "json" {
				return fmt.Errorf("output %q: want table or json", s)
			}
			return nil
		}}
}
