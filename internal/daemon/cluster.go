package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
	"github.com/regmend/regmend/resolver/peers"
)

// Clustered reports whether cluster mode is on: peers are named, or the
// peer endpoint listens.
func (c Config) Clustered() bool {
	return len(c.Peers) > 0 || c.PeersDNS != "" || c.PeerListen != ""
}

// validateCluster checks the cluster settings.
func (c Config) validateCluster() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf(format+": %w", append(a, errdefs.ErrInvalidArgument)...)
	}
	for _, p := range c.Peers {
		if _, err := peers.ParsePeer(p); err != nil {
			return fmt.Errorf("peers: %w", err)
		}
	}
	if c.PeersDNS != "" {
		if h, p, err := net.SplitHostPort(c.PeersDNS); err != nil || h == "" || p == "" {
			return bad("peers_dns %q: want HOST:PORT", c.PeersDNS)
		}
	}
	if c.PeerListen != "" {
		if _, _, err := net.SplitHostPort(c.PeerListen); err != nil {
			return bad("peer_listen %q: want host:port", c.PeerListen)
		}
	}
	switch {
	case c.Clustered() && c.PeerTokenFile == "":
		return bad("peer_token_file is required in cluster mode (peers, peers_dns or peer_listen set)")
	case (c.PeerTLSCert == "") != (c.PeerTLSKey == ""):
		return bad("peer_tls_cert and peer_tls_key go together")
	case c.PeerTLSCA != "" && c.PeerListen != "" && c.PeerTLSCert == "":
		// Peers that trust a CA dial https: this node's endpoint must
		// speak it too.
		return bad("peer_tls_ca with peer_listen needs peer_tls_cert and peer_tls_key")
	case c.TakeoverAfter <= 0:
		return bad("takeover_after %s: must be positive", c.TakeoverAfter)
	}
	return nil
}

// cluster is the daemon's cluster mode: membership, the client that asks
// peers (the mirror's fallback), ownership, and the peer endpoint.
type cluster struct {
	members  *peers.Membership
	client   *peers.Client
	ranker   *peers.Ranker // nil without a peer endpoint: no identity to rank
	token    secret.Source
	metrics  *peers.Metrics
	endpoint http.Handler
	tls      *tls.Config
	deny     *denyHooks // nil without deny_file
}

// newCluster builds cluster mode from cfg, or returns nil when it is off.
func newCluster(ctx context.Context, cfg Config, reg prometheus.Registerer, dn *denyHooks) (*cluster, error) {
	if !cfg.Clustered() {
		return nil, nil
	}
	f, err := secret.ReadFile(ctx, cfg.PeerTokenFile)
	if err != nil {
		return nil, fmt.Errorf("peer_token_file: %w", err)
	}
	if f.Exposed() {
		log.G(ctx).WithField("file", f.Path).Warn("peer token file is readable by other users: whoever reads it can read this node's images through the peer endpoint")
	}
	c := &cluster{token: secret.NewFileSource(f), metrics: peers.NewMetrics(reg), deny: dn}
	scheme := "http"
	clientOpts := dn.clientOptions()
	if cfg.PeerTLSCert != "" || cfg.PeerTLSCA != "" {
		scheme = "https"
		ct, err := peers.ClientTLS(cfg.PeerTLSCert, cfg.PeerTLSKey, cfg.PeerTLSCA)
		if err != nil {
			return nil, err
		}
		clientOpts = append(clientOpts, peers.WithTLS(ct))
	}
	if cfg.PeerTLSCert != "" && cfg.PeerListen != "" {
		if c.tls, err = peers.ServerTLS(cfg.PeerTLSCert, cfg.PeerTLSKey, cfg.PeerTLSCA); err != nil {
			return nil, err
		}
	}
	mopts := []peers.MembershipOption{peers.WithStatic(cfg.Peers...), peers.WithSelf(cfg.PeerListen, peers.InterfaceAddrs()...)}
	if cfg.PeersDNS != "" {
		mopts = append(mopts, peers.WithDNS(cfg.PeersDNS, scheme))
	}
	if c.members, err = peers.NewMembership(mopts...); err != nil {
		return nil, err
	}
	if c.client, err = peers.NewClient(c.members, c.token, append(clientOpts, peers.WithClientMetrics(c.metrics))...); err != nil {
		return nil, err
	}
	if cfg.PeerListen != "" {
		c.ranker = peers.NewRanker(c.client)
	}
	return c, nil
}

// healerOptions adds ownership to the healer in cluster mode.
func (c *cluster) healerOptions(cfg Config, reg prometheus.Registerer) []heal.HealerOption {
	if c == nil || c.ranker == nil {
		return nil
	}
	return []heal.HealerOption{heal.WithOwnership(c.ranker, time.Duration(cfg.TakeoverAfter), heal.NewOwnershipMetrics(reg))}
}

// mirrorOptions makes the containerd-facing mirror ask peers on a miss.
func (c *cluster) mirrorOptions() []mirror.Option {
	if c == nil {
		return nil
	}
	return []mirror.Option{mirror.WithFallback(peerFallback{c.client})}
}

// buildEndpoint makes the peer endpoint: the local store only (no
// fallback), with the heal queue except for ownership probes, which also
// learn whether this node is healing the root now, or when it last healed it.
func (c *cluster) buildEndpoint(cfg Config, store content.Store, allowed mirror.Allowlist, q mirror.Enqueuer, h *heal.Healer) {
	if c == nil || cfg.PeerListen == "" {
		return
	}
	target := func(registry, repo string, d digest.Digest) heal.Target {
		return heal.Target{Registry: registry, Repository: repo, Root: ocispec.Descriptor{Digest: d}}
	}
	healing := func(registry, repo string, d digest.Digest) bool { return h.Healing(target(registry, repo, d)) }
	healed := func(registry, repo string, d digest.Digest) (time.Time, bool) {
		return h.Healed(target(registry, repo, d))
	}
	dopts := c.deny.mirrorOptions(deny.WherePeer)
	serve := mirror.New(store, allowed, append([]mirror.Option{mirror.WithHealQueue(q)}, dopts...)...)
	c.endpoint = peers.NewEndpoint(c.token, serve, mirror.New(store, allowed, dopts...), c.metrics,
		peers.WithHealing(healing), peers.WithHealed(healed))
}

// peerServer listens on the peer endpoint's address, or returns nil when
// there is none.
func (d *Daemon) peerServer(ctx context.Context) (*http.Server, net.Listener, error) {
	c := d.cluster
	if c == nil || c.endpoint == nil {
		return nil, nil, nil
	}
	ln := d.lns.peer // bound by New, before the membership named this node
	l := log.G(ctx).WithField("address", ln.Addr().String()).WithField("tls", c.tls != nil).WithField("mutual_tls", c.tls != nil && c.tls.ClientCAs != nil)
	if c.tls != nil {
		ln = tls.NewListener(ln, c.tls)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() && c.tls == nil {
		l.Warn("regmend peer endpoint without TLS on a non-loopback address: the peer token and images cross the network in clear (peer_tls_cert, peer_tls_key)")
	}
	l.WithField("peers", len(c.members.Peers())).Info("regmend peer endpoint listening (bearer token required)")
	return peerHTTPServer(ctx, c.endpoint, peerIdleTimeout), ln, nil
}

// Limits of the peer endpoint's server, which anyone who reaches the port
// may connect to before presenting a token. Peers send GET and HEAD with no
// body, so a whole request is its headers: a bearer token of at most 1 KiB
// and a path.
const (
	peerReadHeaderTimeout = 10 * time.Second
	peerReadTimeout       = 15 * time.Second // headers and an empty body
	peerIdleTimeout       = 30 * time.Second // a kept-alive connection between requests
	peerMaxHeaderBytes    = 8 << 10          // larger headers get 431
)

// peerHTTPServer serves h with bounded reads and keep-alive, so no client
// holds a connection for long without sending a request; idle is the
// keep-alive bound (peerIdleTimeout; tests shorten it).
func peerHTTPServer(ctx context.Context, h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: peerReadHeaderTimeout,
		ReadTimeout:       peerReadTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    peerMaxHeaderBytes,
	}
}

// runMembers keeps DNS membership fresh until ctx is done.
func (d *Daemon) runMembers(ctx context.Context) error {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.members.Run(ctx)
}
