package peers

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
)

func ids(ps []Peer) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func TestParsePeer(t *testing.T) {
	for _, c := range []struct {
		name, in, id, url string
	}{
		{"http", "http://10.0.0.1:5052", "10.0.0.1:5052", "http://10.0.0.1:5052"},
		{"https default port", "https://node-a.example", "node-a.example:443", "https://node-a.example:443"},
		{"ipv6 canonical", "http://[2001:db8:0::1]:5052/", "[2001:db8::1]:5052", "http://[2001:db8::1]:5052"},
		{"mapped ipv4", "http://[::ffff:10.0.0.1]:5052", "10.0.0.1:5052", "http://10.0.0.1:5052"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParsePeer(c.in)
			if err != nil || p.ID != c.id || p.URL != c.url {
				t.Errorf("ParsePeer(%q) = %+v, %v; want ID %s URL %s", c.in, p, err, c.id, c.url)
			}
		})
	}
	for _, bad := range []string{"10.0.0.1:5052", "ftp://a:1", "http://a:1/v2", "http://u:p@a:1", "http://a:1?x=1", "http://"} {
		if _, err := ParsePeer(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParsePeer(%q) err = %v, want invalid argument", bad, err)
		}
	}
}

func TestStaticMembershipLeavesSelfOut(t *testing.T) {
	m, err := NewMembership(WithSelf("127.0.0.1:7002"),
		WithStatic("http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(m.Peers()); !slices.Equal(got, []string{"127.0.0.1:7001", "127.0.0.1:7003"}) {
		t.Errorf("peers = %v", got)
	}
	if m.Self() != "127.0.0.1:7002" {
		t.Errorf("self = %q", m.Self())
	}
}

func TestStaticMembershipWildcardListenFindsSelfByInterface(t *testing.T) {
	me := netip.MustParseAddr("10.1.2.3")
	m, err := NewMembership(WithSelf(":5052", me), WithStatic("http://10.1.2.3:5052", "http://10.1.2.4:5052", "http://10.1.2.3:6000"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(m.Peers()); !slices.Equal(got, []string{"10.1.2.4:5052", "10.1.2.3:6000"}) {
		t.Errorf("peers = %v", got)
	}
	if m.Self() != "10.1.2.3:5052" {
		t.Errorf("self = %q, want the listed address of this node", m.Self())
	}
}

func TestDNSMembership(t *testing.T) {
	answers := [][]netip.Addr{
		{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.1")},
		nil, // lookup fails: keep the previous answer
		{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::5")},
	}
	call := 0
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != "regmend.kube-system.svc" {
			t.Errorf("looked up %q", host)
		}
		a := answers[call]
		call++
		if a == nil {
			return nil, errors.New("SERVFAIL")
		}
		return a, nil
	}
	m, err := NewMembership(WithDNS("regmend.kube-system.svc:5052", "https"), WithLookup(lookup),
		WithSelf("0.0.0.0:5052", netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("127.0.0.1")))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ids(m.Peers()); !slices.Equal(got, []string{"10.0.0.2:5052", "10.0.0.3:5052"}) {
		t.Errorf("peers = %v", got)
	}
	if m.Self() != "10.0.0.1:5052" || m.Peers()[0].URL != "https://10.0.0.2:5052" {
		t.Errorf("self = %q, first = %+v", m.Self(), m.Peers()[0])
	}
	if err := m.Refresh(ctx); err == nil {
		t.Error("failed lookup reported no error")
	}
	if got := ids(m.Peers()); len(got) != 2 {
		t.Errorf("after a failed lookup peers = %v, want the previous two", got)
	}
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ids(m.Peers()); !slices.Equal(got, []string{"[fd00::5]:5052"}) {
		t.Errorf("peers = %v", got)
	}
}

func TestDNSMembershipRunStopsWithContext(t *testing.T) {
	calls := make(chan struct{}, 10)
	m, err := NewMembership(WithDNS("peers:5052", "http"), WithRefresh(10e6),
		WithLookup(func(context.Context, string) ([]netip.Addr, error) {
			select {
			case calls <- struct{}{}:
			default:
			}
			return []netip.Addr{netip.MustParseAddr("10.0.0.9")}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	<-calls
	<-calls // refreshed again after the interval
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(m.Peers()) != 1 {
		t.Errorf("peers = %v", m.Peers())
	}
}
