package main

import (
	"context"
	"net"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/ctrconf"
	"github.com/regmend/regmend/internal/daemon"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the fallback mirror, background heals and the periodic sweep",
		Description: `List regmend after the registry in the registry's hosts.toml (see 'regmend
hosts'): containerd asks it only after the registry answered 404, and regmend
serves the content from this node's content store and re-pushes it in the
background. Settings come from the -c TOML file; flags override it.

A listen address with port 0 takes a port the kernel picks; --addr-file
tells which (the bound mirror, metrics and peer addresses).`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: daemon.DefaultListen, Usage: "mirror `address` (loopback unless you mean otherwise); port 0 takes a free port, fd://N an inherited socket"},
			&cli.StringFlag{Name: "metrics-listen", Value: daemon.DefaultMetricsListen, Usage: "/metrics and /healthz `address`; empty disables"},
			&cli.StringFlag{Name: "addr-file", Usage: "once listening, write the bound addresses to `file` as JSON {\"mirror\", \"metrics\", \"peer\"} (atomically; removed at exit)"},
			&cli.StringSliceFlag{Name: "registry", Usage: "registry `host[:port]` to serve and heal (repeatable)"},
			&cli.DurationFlag{Name: "sweep-interval", Value: daemon.DefaultSweepInterval, Usage: "check and heal every image this often; 0 disables"},
			&cli.StringFlag{Name: "retain", Value: "tag", Usage: "retention for a re-pushed orphan: `tag` or none"},
			&cli.IntFlag{Name: "workers", Value: 2, Usage: "heals running at once"},
			&cli.IntFlag{Name: "queue-size", Value: 256, Usage: "background heals waiting at most"},
			&cli.StringFlag{Name: "containerd-config", Value: ctrconf.DefaultConfigFile, Usage: "containerd's config `file`, read at start for settings that defeat regmend (logged); empty skips it"},
			&cli.StringFlag{Name: "mirror-token-file", Usage: "mirror token `file` (created, mode 0600, if absent): serve only requests carrying it in the " + daemon.MirrorTokenHeader + " header (see hosts --mirror-token-file)"},
			denyFileFlag(), // deny.go; followed: re-read within a second of a change
		}, clusterFlags()...),
		Action: runServe,
	}
}

// serveConfig merges the config file and the flags set on the command line.
func serveConfig(cmd *cli.Command) (daemon.Config, error) {
	cfg := daemon.DefaultConfig()
	if path := cmd.String(flagConfig); path != "" {
		var err error
		if cfg, err = daemon.LoadFile(path); err != nil {
			return cfg, &exitCode{code: exitUsage, err: err}
		}
	}
	set := func(name string, apply func()) {
		if cmd.IsSet(name) {
			apply()
		}
	}
	set(flagNamespace, func() { cfg.Namespace = cmd.String(flagNamespace) })
	set(flagHostsDir, func() { cfg.HostsDir = cmd.String(flagHostsDir) })
	set(flagAuthFile, func() { cfg.AuthFile = cmd.String(flagAuthFile) })
	set("listen", func() { cfg.Listen = cmd.String("listen") })
	set("metrics-listen", func() { cfg.MetricsListen = cmd.String("metrics-listen") })
	set("addr-file", func() { cfg.AddrFile = cmd.String("addr-file") })
	set("registry", func() { cfg.Registries = cmd.StringSlice("registry") })
	set("sweep-interval", func() { cfg.SweepInterval = daemon.Duration(cmd.Duration("sweep-interval")) })
	set("retain", func() { cfg.Retain = cmd.String("retain") })
	set("workers", func() { cfg.Workers = int(cmd.Int("workers")) })
	set("queue-size", func() { cfg.QueueSize = int(cmd.Int("queue-size")) })
	set("mirror-token-file", func() { cfg.MirrorTokenFile = cmd.String("mirror-token-file") })
	set(flagDenyFile, func() { cfg.DenyFile = cmd.String(flagDenyFile) })
	set("containerd-config", func() { cfg.ContainerdConfig = cmd.String("containerd-config") })
	applyClusterFlags(cmd, &cfg)
	set(flagContentDir, func() { cfg.ContentDir = cmd.String(flagContentDir) })
	if err := cfg.Validate(); err != nil {
		return cfg, &exitCode{code: exitUsage, err: err}
	}
	if len(cfg.Registries) == 0 {
		return cfg, usageError("name the registries to serve and heal: --registry HOST[:PORT] (repeatable) or registries in the config file")
	}
	return cfg, nil
}

// serveSettings is serveConfig with the settings that need a look at files
// checked too, before serve contacts containerd.
func serveSettings(ctx context.Context, cmd *cli.Command) (daemon.Config, error) {
	cfg, err := serveConfig(cmd)
	if err != nil {
		return cfg, err
	}
	if err := checkTokenFile(ctx, cfg.MirrorTokenFile); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func runServe(ctx context.Context, cmd *cli.Command) error {
	if !cmd.IsSet(flagLogLevel) {
		_ = log.SetLevel("info")
	}
	_ = log.SetFormat(log.JSONFormat)
	cfg, err := serveSettings(ctx, cmd)
	if err != nil {
		return err
	}
	n, ctx, err := dial(ctx, cmd.String(flagAddress), cfg.Namespace)
	if err != nil {
		return err
	}
	defer n.Close()
	n.readDirectly(ctx, cfg.ContentDir)
	d, err := daemon.New(cfg, daemon.Stores{Content: n.cs, Images: n.images(), Events: n.client.EventService()})
	if errdefs.IsInvalidArgument(err) { // a bad setting found in a file, such as the peer token's
		return &exitCode{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	log.G(ctx).WithField("registries", cfg.Registries).WithField("namespace", cfg.Namespace).
		WithField("sweep_interval", time.Duration(cfg.SweepInterval).String()).Info("regmend serving")
	err = d.Run(ctx, func(net.Addr) {})
	if errdefs.IsInvalidArgument(err) { // a bad setting found at start, such as the token file's content
		return &exitCode{code: exitUsage, err: err}
	}
	return err
}
