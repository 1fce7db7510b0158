// Package plugin registers regmend as a containerd built-in plugin, type
// io.containerd.server.v1 and id regmend, configured by the
// [plugins."io.containerd.server.v1.regmend"] section of containerd's
// config.toml. A containerd main that imports it (blank import) runs the
// same node agent as `regmend serve` inside containerd, reading the content
// store and image records in-process from containerd's metadata database
// instead of over gRPC.
//
// It owns only the wiring: the config section (daemon.Config's keys and
// defaults), the stores taken from containerd's plugin graph, and starting
// and stopping the daemon with containerd. The mirror, heals and sweep live
// in internal/daemon and resolver; it never writes to containerd's stores.
//
// With no registries set the plugin is skipped (containerd logs "skip
// loading plugin"; `ctr plugins ls` shows it as skip). A bad setting, or an
// address already in use, fails the plugin's init: containerd logs "failed
// to load plugin" with the reason and runs on without regmend.
package plugin

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/log"
	cplugin "github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/regmend/regmend/internal/daemon"
)

// ID is the plugin's id; its config section is
// [plugins."io.containerd.server.v1.regmend"].
const ID = "regmend"

// section names the plugin's table in errors.
const section = `[plugins."` + string(plugins.ServerPlugin) + "." + ID + `"]`

func init() {
	registry.Register(&cplugin.Registration{
		Type:     plugins.ServerPlugin,
		ID:       ID,
		Requires: []cplugin.Type{plugins.MetadataPlugin, plugins.EventPlugin},
		Config:   defaultSection(),
		InitFn:   initAgent,
	})
}

// initAgent validates the section, builds the daemon on containerd's
// in-process stores and starts it; it returns once the mirror listens.
func initAgent(ic *cplugin.InitContext) (any, error) {
	cfg, err := decodeSection(ic.Config)
	if err != nil {
		return nil, fmt.Errorf("regmend %s: %w", section, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("regmend %s: %w", section, err)
	}
	if len(cfg.Registries) == 0 {
		return nil, fmt.Errorf("regmend: no registries set in %s: %w", section, cplugin.ErrSkipPlugin)
	}
	stores, err := inProcessStores(ic)
	if err != nil {
		return nil, err
	}
	d, err := daemon.New(cfg, stores)
	if err != nil {
		return nil, fmt.Errorf("regmend %s: %w", section, err)
	}
	ctx := log.WithLogger(ic.Context, log.G(ic.Context).WithField("plugin", ID))
	a, err := start(ctx, d)
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithField("registries", cfg.Registries).WithField("namespace", cfg.Namespace).
		WithField("sweep_interval", cfg.SweepInterval.String()).Info("regmend serving in containerd")
	return a, nil
}

// inProcessStores returns the metadata database's content store and image
// records, and the event exchange: the same stores containerd's services use.
func inProcessStores(ic *cplugin.InitContext) (daemon.Stores, error) {
	m, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return daemon.Stores{}, fmt.Errorf("regmend: metadata plugin: %w", err)
	}
	db, ok := m.(*metadata.DB)
	if !ok {
		return daemon.Stores{}, fmt.Errorf("regmend: metadata plugin is a %T, not *metadata.DB", m)
	}
	stores := daemon.Stores{Content: db.ContentStore(), Images: metadata.NewImageStore(db)}
	// Events are optional: they only let a new image trigger a sweep.
	if ev, err := ic.GetSingle(plugins.EventPlugin); err == nil {
		stores.Events, _ = ev.(events.Subscriber)
	}
	return stores, nil
}

var _ io.Closer = (*agent)(nil)

// agent is the plugin instance: the daemon running in the background.
type agent struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start runs d until the agent is closed or ctx (containerd's) is done. A
// listen failure is returned, so it fails the plugin's init rather than
// containerd's start.
func start(ctx context.Context, d *daemon.Daemon) (*agent, error) {
	ctx, cancel := context.WithCancel(ctx)
	a := &agent{cancel: cancel, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(a.done)
		a.err = d.Run(ctx, func(net.Addr) { close(ready) })
		select {
		case <-ready: // an error before ready fails the init instead
			if a.err != nil && ctx.Err() == nil {
				log.G(ctx).WithError(a.err).Error("regmend stopped")
			}
		default:
		}
	}()
	select {
	case <-ready:
		return a, nil
	case <-a.done:
		cancel()
		return nil, fmt.Errorf("regmend: %w", a.err)
	}
}

// Start implements containerd's server-plugin interface. The daemon already
// runs from init, so that a listen failure fails only this plugin: an error
// from Start would stop containerd.
func (a *agent) Start(context.Context) error { return nil }

// Close stops the daemon and waits for it; containerd calls it on shutdown.
func (a *agent) Close() error {
	a.cancel()
	<-a.done
	return a.err
}
