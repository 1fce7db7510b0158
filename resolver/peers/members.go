package peers

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// Peer is another regmend's peer endpoint.
type Peer struct {
	// ID is the peer's host:port as every node names it (an IP literal in
	// canonical form when it is one); rankings hash it.
	ID string
	// URL is the endpoint's base URL: scheme://host:port.
	URL string
}

// LookupFunc returns the addresses of host, as net.Resolver.LookupNetIP.
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// Membership knows the peers: a static list and, if set, every A/AAAA
// record of a DNS name, re-resolved every refresh interval by Run. It never
// lists this node: an address equal to the node's own peer address, or
// with the peer port on one of the node's interface addresses, is left out
// (and names the node's own identity, Self).
type Membership struct {
	static   []Peer
	dnsHost  string
	dnsPort  string
	scheme   string
	lookup   LookupFunc
	interval time.Duration
	self     string
	selfIPs  []netip.Addr
	listen   string // host:port of the node's own peer endpoint

	mu      sync.RWMutex
	dns     []Peer
	dnsSelf string
}

// MembershipOption configures a Membership.
type MembershipOption func(*Membership) error

// Default refresh interval for DNS membership.
const DefaultRefresh = 30 * time.Second

// WithStatic adds peers by URL (http://host:port or https://host:port).
func WithStatic(urls ...string) MembershipOption {
	return func(m *Membership) error {
		for _, u := range urls {
			p, err := ParsePeer(u)
			if err != nil {
				return err
			}
			m.static = append(m.static, p)
		}
		return nil
	}
}

// WithDNS takes every A/AAAA record of host as a peer on port, reached
// with scheme (http or https). In Kubernetes host is the DaemonSet's
// headless Service.
func WithDNS(hostport, scheme string) MembershipOption {
	return func(m *Membership) error {
		h, p, err := net.SplitHostPort(hostport)
		if err != nil || h == "" || p == "" {
			return fmt.Errorf("peers_dns %q: want HOST:PORT: %w", hostport, errdefs.ErrInvalidArgument)
		}
		m.dnsHost, m.dnsPort, m.scheme = h, p, scheme
		return nil
	}
}

// WithLookup resolves DNS names with fn. The default is
// net.DefaultResolver.LookupNetIP for "ip".
func WithLookup(fn LookupFunc) MembershipOption {
	return func(m *Membership) error { m.lookup = fn; return nil }
}

// WithRefresh sets how often the DNS name is resolved again. The default
// is DefaultRefresh.
func WithRefresh(d time.Duration) MembershipOption {
	return func(m *Membership) error {
		if d <= 0 {
			return fmt.Errorf("refresh %s: must be positive: %w", d, errdefs.ErrInvalidArgument)
		}
		m.interval = d
		return nil
	}
}

// WithSelf names the node's own peer endpoint address (its --peer-listen,
// host:port). A specific host is the node's identity; with an unspecified
// host (":5052", "0.0.0.0:5052") the identity is the listed address that
// matches one of ips, the node's interface addresses.
func WithSelf(listen string, ips ...netip.Addr) MembershipOption {
	return func(m *Membership) error {
		if listen == "" {
			return nil
		}
		id, err := canonicalHostPort(listen)
		if err != nil {
			return err
		}
		m.listen, m.selfIPs = id, ips
		if h, _, _ := net.SplitHostPort(id); h != "" {
			if a, err := netip.ParseAddr(h); err != nil || !a.IsUnspecified() {
				m.self = id
			}
		}
		return nil
	}
}

// NewMembership returns the membership the options describe.
func NewMembership(opts ...MembershipOption) (*Membership, error) {
	m := &Membership{interval: DefaultRefresh, lookup: lookupIP}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, err
		}
	}
	// The static list is filtered once; a node listed in its own list is
	// told apart as for DNS.
	var kept []Peer
	for _, p := range m.static {
		if m.isSelf(p.ID) {
			if m.self == "" {
				m.self = p.ID
			}
			continue
		}
		kept = append(kept, p)
	}
	m.static = kept
	return m, nil
}

// Self returns the node's identity among peers, or "" if it has none (no
// peer endpoint, or an unspecified listen host no listed address matched).
func (m *Membership) Self() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.self != "" {
		return m.self
	}
	return m.dnsSelf
}

// Peers returns the current peers, this node excluded.
func (m *Membership) Peers() []Peer {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := slices.Clone(m.static)
	for _, p := range m.dns {
		if !slices.ContainsFunc(out, func(q Peer) bool { return q.ID == p.ID }) {
			out = append(out, p)
		}
	}
	return out
}

// Refresh resolves the DNS name now. On failure the previous peers stay.
func (m *Membership) Refresh(ctx context.Context) error {
	if m.dnsHost == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := m.lookup(ctx, m.dnsHost)
	if err != nil {
		return fmt.Errorf("resolve peers %s: %w", m.dnsHost, err)
	}
	var (
		peers []Peer
		self  string
	)
	for _, a := range addrs {
		id := net.JoinHostPort(a.Unmap().WithZone("").String(), m.dnsPort)
		if m.isSelf(id) {
			self = id
			continue
		}
		if !slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == id }) {
			peers = append(peers, Peer{ID: id, URL: m.scheme + "://" + id})
		}
	}
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	m.mu.Lock()
	m.dns, m.dnsSelf = peers, self
	m.mu.Unlock()
	return nil
}

// Run re-resolves the DNS name every refresh interval until ctx is done.
func (m *Membership) Run(ctx context.Context) error {
	if m.dnsHost == "" {
		return nil
	}
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		if err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
			log.G(ctx).WithError(err).Warn("peers: DNS lookup failed; keeping the previous peers")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// isSelf reports whether id (canonical host:port) is this node's endpoint.
func (m *Membership) isSelf(id string) bool {
	if m.listen == "" {
		return false
	}
	if id == m.listen || id == m.self {
		return true
	}
	lh, lp, _ := net.SplitHostPort(m.listen)
	h, p, _ := net.SplitHostPort(id)
	if p != lp {
		return false
	}
	if la, err := netip.ParseAddr(lh); lh != "" && (err != nil || !la.IsUnspecified()) {
		return false // a specific listen address is compared whole, above
	}
	a, err := netip.ParseAddr(h)
	return err == nil && slices.Contains(m.selfIPs, a.Unmap())
}

// ParsePeer parses a peer URL, http(s)://host:port with no path.
func ParsePeer(raw string) (Peer, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
		return Peer{}, fmt.Errorf("peer %q: want http(s)://host:port: %w", raw, errdefs.ErrInvalidArgument)
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	id, err := canonicalHostPort(host)
	if err != nil {
		return Peer{}, fmt.Errorf("peer %q: %w", raw, err)
	}
	return Peer{ID: id, URL: u.Scheme + "://" + id}, nil
}

// canonicalHostPort writes an IP host in canonical form, so that every node
// names a peer the same way.
func canonicalHostPort(hp string) (string, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", fmt.Errorf("address %q: want host:port: %w", hp, errdefs.ErrInvalidArgument)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		h = a.Unmap().WithZone("").String()
	}
	return net.JoinHostPort(h, p), nil
}

func lookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// InterfaceAddrs returns the node's interface addresses, for WithSelf.
func InterfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, pfx.Addr().Unmap())
		}
	}
	return out
}
