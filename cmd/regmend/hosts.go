package main

import (
	"context"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/ctrconf"
	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/internal/hostsfile"
)

func hostsCommand() *cli.Command {
	return &cli.Command{
		Name:      "hosts",
		Usage:     "list regmend in registries' hosts.toml, after each registry",
		ArgsUsage: "REGISTRY...",
		Description: `Writes or updates <hosts-dir>/<REGISTRY>/hosts.toml, for each REGISTRY named,
so containerd asks the
registry first and regmend's mirror only after the registry answered 404.
Keeps everything already in the file, backs it up before changing it, does
nothing when it is already right, and refuses a file it cannot parse. Then
checks containerd's config for the settings that defeat regmend (CRI's
config_path, discard_unpacked_layers, the k3s and rke2 layouts) and warns,
naming each with its file, line and fix.

With --mirror-token-file, regmend's entry also carries the node's mirror
token as the X-Regmend-Token header (the file is created if absent, and the
token is only ever read from it); serve --mirror-token-file then refuses
every request without it. Run again after the token changes to rotate it.

With --remove, takes regmend's entry out again (uninstall): the entry
marked as regmend's wherever it is (and any entry at --mirror, if given), and
leaves the rest of the file byte for byte, with the mode it had before the
token; a file regmend created and nothing else was added to is deleted.
With --mirror-token-file, the token file is deleted afterwards (unless
--keep-mirror-token, or another hosts.toml still holds the token).
Idempotent. Backups (hosts.toml.bak.<time>) never hold the token: one is
kept of the file before regmend first changed it, and --remove takes the
token out of any older one.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mirror", Value: "http://127.0.0.1:5050", Usage: "regmend's mirror `URL` (serve --listen); with --remove, unset means regmend's entry at any address"},
			&cli.StringFlag{Name: "server-scheme", Usage: "`http` or https for the registry, when the file names no server (default https)"},
			containerdConfigFlag("containerd's config `file`, checked for settings that defeat regmend (CRI's config_path, discard_unpacked_layers, the k3s and rke2 layouts)"),
			&cli.BoolFlag{Name: "dry-run", Usage: "print the resulting file; write nothing"},
			&cli.StringFlag{Name: "mirror-token-file", Usage: "mirror token `file` (created, mode 0600, if absent), written into the mirror's entry as the " + daemon.MirrorTokenHeader + " header; with --remove, deleted"},
			&cli.BoolFlag{Name: "remove", Usage: "take regmend's entry out of the file instead (uninstall)"},
			&cli.BoolFlag{Name: "keep-mirror-token", Usage: "with --remove, keep the --mirror-token-file"},
		},
		Action: runHosts,
	}
}

// runHosts lists regmend in each registry's hosts.toml, or with --remove
// takes it out. Every name is checked before any file is touched, so a typo
// in the last one does not leave the first ones done.
func runHosts(ctx context.Context, cmd *cli.Command) error {
	registries := cmd.Args().Slice()
	if len(registries) == 0 {
		return usageError("hosts takes at least one registry (host[:port])")
	}
	for _, r := range registries {
		if err := hostsfile.ValidateRegistry(r); err != nil {
			return &exitCode{code: exitUsage, err: err}
		}
	}
	if cmd.Bool("remove") {
		return runHostsRemove(ctx, cmd, registries)
	}
	if cmd.Bool("keep-mirror-token") {
		return usageError("--keep-mirror-token goes with --remove")
	}
	hostsDir := cmd.String(flagHostsDir)
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
	w := cmd.Root().Writer
	tok, err := mirrorToken(ctx, cmd)
	if err != nil {
		return err
	}
	if !tok.Token.IsZero() {
		opts = append(opts, hostsfile.WithMirrorToken(daemon.MirrorTokenHeader, tok.Token.Reveal()))
	}
	for _, registry := range registries {
		res, err := hostsfile.Ensure(ctx, hostsDir, registry, cmd.String("mirror"), opts...)
		if errdefs.IsInvalidArgument(err) {
			return &exitCode{code: exitUsage, err: err}
		}
		if err != nil {
			return err
		}
		verb := map[hostsfile.Action]string{hostsfile.Created: "created", hostsfile.Updated: "updated", hostsfile.Unchanged: "already right:"}[res.Action]
		printHostsResult(w, res, verb, cmd.Bool("dry-run"), tok)
	}
	warnContainerdTraps(ctx, cmd, ctrconf.WithMirror(cmd.String("mirror")), ctrconf.WithRegistries(registries...))
	return nil
}
