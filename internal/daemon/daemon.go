package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/ctrconf"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
	"github.com/regmend/regmend/resolver/registry"
)

// ContentStore is what the daemon reads of containerd's content store.
type ContentStore interface {
	content.Store
	content.BlobLister
}

// Stores are containerd's stores, over gRPC or in-process.
type Stores struct {
	Content ContentStore
	Images  content.ImageLister
	// Events, when set, lets a new image trigger a sweep.
	Events events.Subscriber
}

// Daemon is a configured regmend node agent.
type Daemon struct {
	cfg     Config
	stores  Stores
	healer  *heal.Healer
	queue   *heal.Queue
	mirror  *mirror.Mirror
	metrics *heal.Metrics
	reg     *prometheus.Registry
	cluster *cluster // nil unless cluster mode is on
	lns     *listeners
	sweeps  sweeps
}

// New validates cfg, binds the listeners it names and builds the daemon.
// The mirror's own bound address is excluded from registry access, so
// regmend never calls itself whatever hosts.toml lists. Run serves on the
// listeners; a daemon that is not run must be closed.
func New(cfg Config, stores Stores) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Registries) == 0 {
		return nil, fmt.Errorf("no registries configured: regmend serves and heals only the registries it is given: %w", errdefs.ErrInvalidArgument)
	}
	lns, cfg, err := bind(cfg)
	if err != nil {
		return nil, err
	}
	d, err := build(cfg, stores)
	if err != nil {
		lns.close()
		return nil, err
	}
	d.lns = lns
	return d, nil
}

// build makes the daemon's parts from cfg, whose addresses are bound.
func build(cfg Config, stores Stores) (*Daemon, error) {
	remote, err := registry.NewRemote(
		registry.WithHostsDir(cfg.HostsDir),
		registry.WithAuthFile(cfg.AuthFile),
		registry.WithExcludedHost(cfg.Listen),
		registry.WithRegistries(cfg.Registries...),
	)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, stores: stores, reg: prometheus.NewRegistry()}
	d.metrics = heal.NewMetrics(d.reg)
	if d.cluster, err = newCluster(context.Background(), cfg, d.reg); err != nil {
		return nil, err
	}
	store, err := healStore(context.Background(), cfg, stores.Content, remote)
	if err != nil {
		return nil, err
	}
	d.healer, err = heal.NewHealer(store, remote,
		append([]heal.HealerOption{heal.WithRetention(heal.Retention(cfg.Retain))}, d.cluster.healerOptions(cfg, d.reg)...)...)
	if err != nil {
		return nil, err
	}
	local := content.Local{Store: stores.Content, Blobs: stores.Content, Images: stores.Images}
	d.queue, err = heal.NewQueue(d.healer, local,
		heal.WithQueueSize(cfg.QueueSize), heal.WithWorkers(cfg.Workers), heal.WithQueueMetrics(d.metrics))
	if err != nil {
		return nil, err
	}
	d.mirror = mirror.New(stores.Content, remote, append([]mirror.Option{mirror.WithHealQueue(d.queue), mirror.WithMetrics(mirror.NewMetrics(d.reg))}, d.cluster.mirrorOptions()...)...)
	d.cluster.buildEndpoint(cfg, stores.Content, remote, d.queue, d.healer)
	return d, nil
}

// Mirror returns the mirror's HTTP handler.
func (d *Daemon) Mirror() http.Handler { return d.mirror }

// Queue returns the background heal queue.
func (d *Daemon) Queue() *heal.Queue { return d.queue }

// Close releases the listeners of a daemon that was never run.
func (d *Daemon) Close() error {
	d.lns.close()
	return nil
}

// Run serves until ctx is done, then shuts the servers down gracefully; it
// closes the listeners New bound, so a daemon runs once. Once every server
// is set up it writes addr_file, if set (removed again when Run returns),
// and calls ready, if set, with the mirror's bound address.
func (d *Daemon) Run(ctx context.Context, ready func(addr net.Addr)) error {
	defer d.lns.close()
	ctx = namespaces.WithNamespace(ctx, d.cfg.Namespace)
	logContainerdTraps(ctx, d.cfg)
	handler, err := d.guardMirror(ctx)
	if err != nil {
		return err
	}
	mirrorLn := d.lns.mirror
	logListen(ctx, mirrorLn.Addr())
	servers := []*http.Server{{Handler: handler, BaseContext: func(net.Listener) context.Context { return ctx }, ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{mirrorLn}
	if ln := d.lns.metrics; ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
		servers = append(servers, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, ln)
		log.G(ctx).WithField("address", ln.Addr().String()).Info("regmend metrics and /healthz listening")
	}
	if srv, ln, err := d.peerServer(ctx); err != nil {
		return err
	} else if srv != nil {
		servers, listeners = append(servers, srv), append(listeners, ln)
	}
	if d.cfg.AddrFile != "" {
		if err := writeAddrFile(d.cfg.AddrFile, d.Addrs()); err != nil {
			return err
		}
		// A file naming ports nobody serves any more would mislead.
		defer os.Remove(d.cfg.AddrFile)
	}
	if ready != nil {
		ready(mirrorLn.Addr())
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, srv := range servers {
		g.Go(func() error {
			if err := srv.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error { return d.queue.Run(gctx) })
	g.Go(func() error { return d.sweep(gctx) })
	g.Go(func() error { return d.runMembers(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, srv := range servers {
			srv.Shutdown(sctx)
		}
		return nil
	})
	return g.Wait()
}

// logContainerdTraps logs, once, each containerd setting that defeats
// regmend, with its file, line and fix.
func logContainerdTraps(ctx context.Context, cfg Config) {
	if cfg.ContainerdConfig == "" {
		return
	}
	findings, err := ctrconf.Check(ctx, ctrconf.WithConfigFile(cfg.ContainerdConfig), ctrconf.WithHostsDir(cfg.HostsDir),
		ctrconf.WithMirror("http://"+cfg.Listen), ctrconf.WithRegistries(cfg.Registries...))
	for _, f := range findings {
		log.G(ctx).WithField("file", f.Where()).WithField("setting", f.Setting).WithField("fix", f.Fix).
			Warn("containerd setting defeats regmend: " + f.Why)
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot check containerd's config for settings that defeat regmend")
	}
}

func logListen(ctx context.Context, addr net.Addr) {
	l := log.G(ctx).WithField("address", addr.String())
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		l.Warn("regmend mirror listening on a non-loopback address: other hosts can read this node's images through it")
		return
	}
	l.Info("regmend mirror listening (loopback only)")
}
