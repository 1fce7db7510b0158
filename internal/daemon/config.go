// Package daemon runs regmend on a node: the fallback mirror, the background
// heal queue, the periodic sweep and the metrics endpoint. `regmend serve`
// and the containerd plugin both run it; they differ only in how they reach
// containerd's stores (gRPC client or in-process). Heals read the node's
// content store, then the configured sources (an upstream registry, an
// image layout) for what it lacks; the mirror serves the node's store alone.
package daemon

import (
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/imageref"
	"github.com/regmend/regmend/internal/ctrconf"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
)

// Config holds the daemon's settings: the `regmend serve -c` file and the
// plugin's [plugins."io.containerd.server.v1.regmend"] section.
type Config struct {
	// Listen is the mirror's address. Loopback by default: the mirror serves
	// this node's content to this node's containerd.
	Listen string `toml:"listen"`
	// MetricsListen serves /metrics and /healthz; "" disables it.
	MetricsListen string `toml:"metrics_listen"`
	// AddrFile, when set, receives the bound addresses (JSON: mirror,
	// metrics, peer) once every listener is up, written atomically and
	// removed at exit: the way to learn the ports chosen for port 0.
	// Every listen setting is host:port or fd://N, an inherited socket.
	AddrFile string `toml:"addr_file"`
	// Registries are the registries served and healed (host[:port]).
	// Nothing is served or healed until at least one is named.
	Registries []string `toml:"registries"`
	// Sources are where a heal reads what this node's store lacks, tried
	// in order after it: REGISTRY/REPO (another registry's repository, an
	// upstream, read with GET and HEAD only, through the hosts directory
	// and auth file) or oci:DIR (an OCI image layout). Blobs are read from
	// them by digest; the mirror never serves them, only the node's store.
	Sources []string `toml:"sources"`
	// Namespace is the containerd namespace holding the images.
	Namespace string `toml:"namespace"`
	// HostsDir is containerd's registry config_path.
	HostsDir string `toml:"hosts_dir"`
	// AuthFile is a docker-style config.json with registry credentials.
	AuthFile string `toml:"auth_file"`
	// SweepInterval is how often every image is checked and healed; 0
	// disables the sweep.
	SweepInterval Duration `toml:"sweep_interval"`
	// Retain is "tag" (bind a retention tag to a re-pushed orphan) or "none".
	Retain string `toml:"retain"`
	// QueueSize bounds the background heals waiting.
	QueueSize int `toml:"queue_size"`
	// Workers is how many heals run at once.
	Workers int `toml:"workers"`
	// MirrorTokenFile holds the mirror token; it is created (mode 0600) if
	// absent and re-read when it changes. The mirror then answers 404 to any
	// request without the token in the X-Regmend-Token header, which
	// `regmend hosts --mirror-token-file` writes into hosts.toml for
	// containerd. "" leaves the mirror open to every local process.
	MirrorTokenFile string `toml:"mirror_token_file"`

	// Cluster mode (docs/cluster.md): off unless peers, peers_dns or
	// peer_listen is set.

	// Peers are other nodes' peer endpoints, http(s)://host:port.
	Peers []string `toml:"peers"`
	// PeersDNS is HOST:PORT: every A/AAAA record of HOST is a peer on PORT,
	// re-resolved every 30s (a DaemonSet's headless Service).
	PeersDNS string `toml:"peers_dns"`
	// PeerListen is the peer endpoint's address; "" serves no peers.
	PeerListen string `toml:"peer_listen"`
	// PeerTokenFile holds the cluster's shared bearer token.
	PeerTokenFile string `toml:"peer_token_file"`
	// PeerTLSCert and PeerTLSKey serve the peer endpoint over TLS and are
	// presented to peers; PeerTLSCA verifies peers (mutual TLS).
	PeerTLSCert string `toml:"peer_tls_cert"`
	PeerTLSKey  string `toml:"peer_tls_key"`
	PeerTLSCA   string `toml:"peer_tls_ca"`
	// TakeoverAfter is how long a holder waits for the owning peer's
	// progress before it heals a root itself (per rank).
	TakeoverAfter Duration `toml:"takeover_after"`

	// ContentDir is containerd's content directory, read directly for
	// blobs (not over gRPC) where this process can read it: "" asks
	// containerd, "none" reads only through its API. An unreadable
	// directory falls back to the API. The plugin build ignores it: it reads
	// the store in-process, from the same files.
	ContentDir string `toml:"content_dir"`

	// ContainerdConfig is containerd's config file, read once at start to
	// log each setting that defeats regmend (internal/ctrconf); "" skips
	// the check.
	ContainerdConfig string `toml:"containerd_config"`
}

// Default settings; the rest come from the packages that own them
// (registry.DefaultHostsDir, heal.DefaultWorkers, ...).
const (
	DefaultListen        = "127.0.0.1:5050"
	DefaultMetricsListen = "127.0.0.1:5051"
	DefaultSweepInterval = 30 * time.Minute
	// DefaultNamespace is CRI's containerd namespace.
	DefaultNamespace = "k8s.io"
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:        DefaultListen,
		MetricsListen: DefaultMetricsListen,
		Namespace:     DefaultNamespace,
		HostsDir:      registry.DefaultHostsDir,
		SweepInterval: Duration(DefaultSweepInterval),
		Retain:        string(heal.RetainTag),
		QueueSize:     heal.DefaultQueueSize,
		Workers:       heal.DefaultWorkers,
		TakeoverAfter: Duration(heal.DefaultTakeoverAfter),

		ContainerdConfig: ctrconf.DefaultConfigFile,
	}
}

// LoadFile reads a TOML config file over the defaults (see DecodeConfig).
func LoadFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return DefaultConfig(), fmt.Errorf("config file: %w", err)
	}
	cfg, err := DecodeConfig(b)
	if err != nil {
		return cfg, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks every setting, naming the first that is wrong.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf(format+": %w", append(a, errdefs.ErrInvalidArgument)...)
	}
	if !validListen(c.Listen) {
		return bad("listen %q: want host:port or %sN", c.Listen, FDPrefix)
	}
	if c.MetricsListen != "" && !validListen(c.MetricsListen) {
		return bad("metrics_listen %q: want host:port or %sN", c.MetricsListen, FDPrefix)
	}
	for _, r := range c.Registries {
		if err := imageref.ValidateRegistry(r); err != nil {
			return fmt.Errorf("registries: %w", err)
		}
	}
	if err := validateSources(c.Sources); err != nil {
		return err
	}
	if _, err := heal.ParseRetention(c.Retain); err != nil {
		return bad("retain %q: want %s or %s", c.Retain, heal.RetainTag, heal.RetainNone)
	}
	switch {
	case c.Namespace == "":
		return bad("namespace is empty")
	case c.SweepInterval < 0:
		return bad("sweep_interval %s is negative", c.SweepInterval)
	case c.QueueSize < 1:
		return bad("queue_size %d: must be at least 1", c.QueueSize)
	case c.Workers < 1:
		return bad("workers %d: must be at least 1", c.Workers)
	}
	return c.validateCluster()
}

// Duration is a time.Duration written as "30m" in TOML.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// String writes the duration as a Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }
