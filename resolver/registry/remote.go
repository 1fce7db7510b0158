package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"golang.org/x/time/rate"

	"github.com/regmend/regmend/imageref"
)

// Remote reaches the registries regmend heals, configured as containerd is
// on this node.
type Remote struct {
	hostsDir    string
	credentials func(host string) (string, string, error)
	configured  docker.RegistryHosts // WithRegistryHosts; nil reads hostsDir
	fromFiles   bool                 // WithHostsDir or WithAuthFile was given
	exclude     []string             // host:port of regmend's own mirror
	registries  []string             // allow-list; empty allows any
	retry       retryPolicy
	limiter     *rate.Limiter // nil: unlimited
	stall       time.Duration

	mu     sync.Mutex
	cached map[string]cachedHosts // registry → its hosts, for hostsTTL
}

// cachedHosts keeps a registry's configured hosts, and so their HTTP
// clients, connections and auth tokens, across heals and checks.
type cachedHosts struct {
	hosts  []docker.RegistryHost
	loaded time.Time
}

// hostsTTL is how long a registry's hosts.toml is trusted before it is read
// again, so an edit takes effect without a restart.
const hostsTTL = 30 * time.Second

// DefaultHostsDir is containerd's usual config_path, where hosts.toml files
// live: /etc/containerd/certs.d/<registry>/hosts.toml.
const DefaultHostsDir = "/etc/containerd/certs.d"

// Option configures a Remote.
type Option func(*Remote) error

// WithHostsDir reads registry host configuration (hosts.toml, certificates)
// from dir, as containerd's config_path. The default is DefaultHostsDir; ""
// uses containerd's defaults for every registry.
func WithHostsDir(dir string) Option {
	return func(r *Remote) error { r.hostsDir, r.fromFiles = dir, true; return nil }
}

// WithRegistryHosts takes each registry's hosts (addresses, TLS, headers,
// credentials) from hosts, as containerd's resolver does, instead of from a
// hosts directory: for callers that configure registries in code, and for
// tests against servers of their own. It cannot be combined with
// WithHostsDir or WithAuthFile (the hosts carry their own Authorizer). The
// default reads DefaultHostsDir.
func WithRegistryHosts(hosts docker.RegistryHosts) Option {
	return func(r *Remote) error {
		if hosts == nil {
			return fmt.Errorf("registry hosts: nil function: %w", errdefs.ErrInvalidArgument)
		}
		r.configured = hosts
		return nil
	}
}

// WithAuthFile takes registry credentials from a docker-style config.json.
// A missing file means no credentials. The default is none.
func WithAuthFile(path string) Option {
	return func(r *Remote) error {
		creds, err := loadAuthFile(path)
		if err != nil {
			return err
		}
		r.credentials, r.fromFiles = creds, true
		return nil
	}
}

// WithExcludedHost never sends a request to hostport (regmend's own mirror
// listen address), even when hosts.toml lists it.
func WithExcludedHost(hostport string) Option {
	return func(r *Remote) error { r.exclude = append(r.exclude, hostport); return nil }
}

// WithRegistries restricts pushes to the named registries (host[:port]).
// The default allows any registry named explicitly by a caller.
func WithRegistries(names ...string) Option {
	return func(r *Remote) error {
		for _, n := range names {
			if err := imageref.ValidateRegistry(n); err != nil {
				return err
			}
		}
		r.registries = append(r.registries, names...)
		return nil
	}
}

// WithRetry sets how many times a transient registry failure (connection
// drop, 408, 429, 5xx) is tried in all, with exponential backoff from base.
// The default is 5 attempts from 200ms.
func WithRetry(attempts int, base time.Duration) Option {
	return func(r *Remote) error {
		if attempts < 1 {
			return fmt.Errorf("retry attempts %d: must be at least 1: %w", attempts, errdefs.ErrInvalidArgument)
		}
		r.retry = retryPolicy{attempts: attempts, base: base}
		return nil
	}
}

// WithStallTimeout abandons a request to a registry that makes too little
// progress for d (no answer, or fewer than 64 KiB of its body or of the
// answer moved), as a transient failure, so a registry that accepts
// connections and never answers, or takes an upload a trickle at a time,
// cannot hang a heal. The registry's own check of a large blob after its
// last byte must fit in d. The default is DefaultStallTimeout.
func WithStallTimeout(d time.Duration) Option {
	return func(r *Remote) error {
		if d <= 0 {
			return fmt.Errorf("stall timeout %s: must be positive: %w", d, errdefs.ErrInvalidArgument)
		}
		r.stall = d
		return nil
	}
}

// DefaultStallTimeout is how long a registry request may make no progress.
const DefaultStallTimeout = 60 * time.Second

// WithRequestRate limits the requests sent to registries to perSecond on
// average with bursts of burst, so a fleet of nodes checking at once does
// not flatten an edge registry. The default is unlimited.
func WithRequestRate(perSecond float64, burst int) Option {
	return func(r *Remote) error {
		if perSecond <= 0 || burst < 1 {
			return fmt.Errorf("request rate %g/s burst %d: both must be positive: %w", perSecond, burst, errdefs.ErrInvalidArgument)
		}
		r.limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
		return nil
	}
}

// NewRemote returns a Remote.
func NewRemote(opts ...Option) (*Remote, error) {
	r := &Remote{hostsDir: DefaultHostsDir, retry: defaultRetry, stall: DefaultStallTimeout, cached: map[string]cachedHosts{}}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	if r.configured != nil && r.fromFiles {
		return nil, fmt.Errorf("registry hosts given in code and a hosts directory or auth file: choose one: %w", errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// Allowed reports whether regmend may serve and heal registry.
func (r *Remote) Allowed(registry string) bool {
	return len(r.registries) == 0 || slices.Contains(r.registries, registry)
}

// hosts returns the hosts containerd would use for registry, minus regmend's
// own mirror.
func (r *Remote) hosts(ctx context.Context, registry string) ([]docker.RegistryHost, error) {
	r.mu.Lock()
	c, ok := r.cached[registry]
	r.mu.Unlock()
	if ok && time.Since(c.loaded) < hostsTTL {
		return c.hosts, nil
	}
	configure := r.configured
	if configure == nil {
		configure = r.hostsFromDir(ctx)
	}
	all, err := configure(registry)
	if err != nil {
		return nil, fmt.Errorf("hosts of registry %s: %w", registry, err)
	}
	var hosts []docker.RegistryHost
	for _, h := range all {
		if !r.excluded(h.Host) {
			hosts = append(hosts, h)
		}
	}
	r.mu.Lock()
	r.cached[registry] = cachedHosts{hosts: hosts, loaded: time.Now()}
	r.mu.Unlock()
	return hosts, nil
}

// hostsFromDir reads a registry's hosts.toml under the hosts directory with
// containerd's own parser (which logs with ctx's logger).
func (r *Remote) hostsFromDir(ctx context.Context) docker.RegistryHosts {
	opts := config.HostOptions{Credentials: r.credentials, UpdateClient: keepConnections}
	if r.hostsDir != "" {
		opts.HostDir = config.HostDirFromRoot(r.hostsDir)
	}
	configure := config.ConfigureHosts(ctx, opts)
	return func(registry string) ([]docker.RegistryHost, error) {
		all, err := configure(registry)
		if err != nil {
			return nil, fmt.Errorf("hosts.toml in %s: %w", r.hostsDir, err)
		}
		return all, nil
	}
}

// keepConnections lets a heal's or check's concurrent requests reuse their
// connections: Go keeps only 2 idle ones per host by default, so with more in
// flight most requests would dial (and, over TLS, handshake) anew.
func keepConnections(c *http.Client) error {
	if tr, ok := c.Transport.(*http.Transport); ok {
		tr.MaxIdleConnsPerHost = 16
	}
	return nil
}

func (r *Remote) excluded(host string) bool {
	for _, x := range r.exclude {
		if sameHostPort(x, host) {
			return true
		}
	}
	return false
}

// sameHostPort compares two host:port strings, treating the loopback and
// unspecified names of one port as the same listener.
func sameHostPort(a, b string) bool {
	if a == b {
		return true
	}
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	local := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "localhost" || h == "" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified()))
	}
	return local(ah) && local(bh)
}

// pushHost is the registry itself: the first push-capable host. Presence is
// asked of it too, since a pull-through mirror's answer says nothing of what
// the registry holds.
func (r *Remote) pushHost(ctx context.Context, registry string) (docker.RegistryHost, error) {
	if !r.Allowed(registry) {
		return docker.RegistryHost{}, fmt.Errorf("registry %s is not in regmend's configured registries %v: %w", registry, r.registries, errdefs.ErrPermissionDenied)
	}
	hosts, err := r.hosts(ctx, registry)
	if err != nil {
		return docker.RegistryHost{}, err
	}
	for _, h := range hosts {
		if !h.Capabilities.Has(docker.HostCapabilityPush) {
			continue
		}
		if h.Host == "" || h.Scheme != "http" && h.Scheme != "https" {
			return docker.RegistryHost{}, fmt.Errorf("push host %q of %s: scheme %q: want a host, and http or https: %w", h.Host, registry, h.Scheme, errdefs.ErrInvalidArgument)
		}
		return h, nil
	}
	where := "in hosts.toml under " + r.hostsDir
	if r.configured != nil {
		where = "among the configured registry hosts"
	}
	return docker.RegistryHost{}, fmt.Errorf("no push-capable host for %s %s: %w", registry, where, errdefs.ErrNotFound)
}
