package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/hostsfile"
)

func hostsCommand() *cli.Command {
	return &cli.Command{
		Name:      "hosts",
		Usage:     "list regmend in a registry's hosts.toml, after the registry",
		ArgsUsage: "REGISTRY",
		Description: `Writes or updates <hosts-dir>/<REGISTRY>/hosts.toml so containerd asks the
registry first and regmend's mirror only after the registry answered 404.
Keeps everything already in the file, backs it up before changing it, does
nothing when it is already right, and refuses a file it cannot parse. Then
checks that containerd's CRI config_path makes containerd read it.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mirror", Value: "http://127.0.0.1:5050", Usage: "regmend's mirror `URL` (serve --listen)"},
			&cli.StringFlag{Name: "server-scheme", Usage: "`http` or https for the registry, when the file names no server (default https)"},
			&cli.StringFlag{Name: "containerd-config", Value: "/etc/containerd/config.toml", Usage: "containerd's config `file`, checked for CRI's config_path"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the resulting file; write nothing"},
		},
		Action: runHosts,
	}
}

func runHosts(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() != 1 {
		return usageError("hosts takes one registry (host[:port]), got %d", cmd.NArg())
	}
	registry, hostsDir := cmd.Args().First(), cmd.String(flagHostsDir)
	var opts []hostsfile.Option
	if s := cmd.String("server-scheme"); s != "" {
		if s != "http" && s != "https" {
			return usageError("--server-scheme %q: want http or https", s)
		}
		opts = append(opts, hostsfile.WithServerScheme(s))
	}
	if cmd.Bool("dry-run") {
		opts = append(opts, hostsfile.WithDryRun())
	}
	res, err := hostsfile.Ensure(ctx, hostsDir, registry, cmd.String("mirror"), opts...)
	if errdefs.IsInvalidArgument(err) {
		return &exitCode{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	verb := map[hostsfile.Action]string{hostsfile.Created: "created", hostsfile.Updated: "updated", hostsfile.Unchanged: "already right:"}[res.Action]
	if cmd.Bool("dry-run") {
		verb = "would write"
	}
	fmt.Fprintf(w, "%s %s\n", verb, res.Path)
	if res.Backup != "" {
		fmt.Fprintf(w, "previous file kept as %s\n", res.Backup)
	}
	if cmd.Bool("dry-run") {
		w.Write(res.Content)
	}
	fmt.Fprintln(w, "containerd will try, in order:")
	for _, h := range res.Hosts {
		fmt.Fprintf(w, "  %s\n", h)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	f, err := hostsfile.CheckCRIConfigPath(cmd.String("containerd-config"), hostsDir)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "warning: cannot check containerd's config: %v\n", err)
	case !f.OK():
		fmt.Fprintf(os.Stderr, "warning: %s\n--- %s\n%s\n", f.Message, f.FixIn, f.Fix)
	}
	return nil
}
