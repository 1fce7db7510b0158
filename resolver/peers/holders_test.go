package peers

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
)

// fakeHolder is a peer that holds one root; its probes' answers may say
// it is healing it, or that it healed it.
type fakeHolder struct {
	srv      *httptest.Server
	id       string
	requests atomic.Int64
	healing  atomic.Bool
	healed   atomic.Bool
}

// standingBy is a node that holds an orphan and ranks rank among n
// holders: itself and n-1 fake peers.
type standingBy struct {
	base     string
	img      *imagetest.Object
	target   heal.Target
	healer   *heal.Healer
	holders  []*fakeHolder
	ahead    []*fakeHolder // the holders ranked before this node, the owner first
	owner    *fakeHolder
	registry atomic.Int64 // requests the registry saw
	metrics  *prometheus.Registry
}

func newStandingBy(t *testing.T, n, rank int, takeoverAfter time.Duration) *standingBy {
	t.Helper()
	s := &standingBy{metrics: prometheus.NewRegistry()}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	rsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.registry.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(rsrv.Close)
	s.base = rsrv.URL
	host := strings.TrimPrefix(rsrv.URL, "http://")
	hostsDir := t.TempDir()
	os.MkdirAll(filepath.Join(hostsDir, host), 0o755)
	if err := os.WriteFile(filepath.Join(hostsDir, host, "hosts.toml"), []byte(fmt.Sprintf("server = %q\n", rsrv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	cs, _ := imagetest.LocalStore(t)
	s.img = imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 2, 4096)
	imagetest.WriteLocal(t, cs, host, testRepo, s.img)
	s.target = heal.Target{Registry: host, Repository: testRepo, Root: s.img.Root()}

	ids, urls := []string{}, []string{}
	for range n - 1 {
		h := &fakeHolder{}
		h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.requests.Add(1)
			if r.Method != http.MethodHead || !strings.HasSuffix(r.URL.Path, "/manifests/"+s.img.Desc.Digest.String()) {
				t.Errorf("unexpected access: %s %s", r.Method, r.URL)
				w.WriteHeader(404)
				return
			}
			if r.Header.Get(ProbeHeader) != "" {
				if h.healing.Load() {
					w.Header().Set(HealingHeader, "1")
				}
				if h.healed.Load() {
					w.Header().Set(HealedHeader, "0")
				}
			}
			w.Header().Set("Docker-Content-Digest", s.img.Desc.Digest.String())
			w.Header().Set("Content-Length", strconv.Itoa(len(s.img.Data)))
		}))
		t.Cleanup(h.srv.Close)
		p, _ := ParsePeer(h.srv.URL)
		h.id = p.ID
		s.holders = append(s.holders, h)
		ids, urls = append(ids, p.ID), append(urls, h.srv.URL)
	}
	self := ""
	for port := 1; self == ""; port++ {
		id := "127.0.0.1:" + strconv.Itoa(port)
		if slices.Index(Rendezvous(s.img.Desc.Digest, append([]string{id}, ids...)), id) == rank {
			self = id
		}
	}
	for _, id := range Rendezvous(s.img.Desc.Digest, append([]string{self}, ids...))[:rank] {
		s.ahead = append(s.ahead, s.holders[slices.Index(ids, id)])
	}
	s.owner = s.ahead[0]
	members, err := NewMembership(WithSelf(self), WithStatic(urls...))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(members, staticSource(newToken(t)), WithTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	remote, err := registry.NewRemote(registry.WithHostsDir(hostsDir), registry.WithRegistries(host))
	if err != nil {
		t.Fatal(err)
	}
	s.healer, err = heal.NewHealer(cs, remote, heal.WithOwnership(NewRanker(c), takeoverAfter, heal.NewOwnershipMetrics(s.metrics)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *standingBy) peerRequests() int64 {
	var n int64
	for _, h := range s.holders {
		n += h.requests.Load()
	}
	return n
}

// TestStandingByCostIndependentOfFleet: while the owner heals a root, a
// holder standing by sends one request per interval, to the owner, and
// none to the registry, however many nodes hold the root; when the owner
// says it healed the root, the holder asks the registry once and ends.
func TestStandingByCostIndependentOfFleet(t *testing.T) {
	const after = time.Second // an interval of 250ms
	for _, n := range []int{4, 16} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			s := newStandingBy(t, n, 1, after)
			s.owner.healing.Store(true)
			type result struct {
				res *heal.Result
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := s.healer.Heal(context.Background(), s.target)
				done <- result{res, err}
			}()
			// The owner is asked once an interval whatever else is; the
			// deferral itself (ranking, one plan) is over by its second
			// request.
			imagetest.WaitUntil(t, 5*time.Second, "the owner asked twice", func() bool { return s.owner.requests.Load() >= 2 })
			owner0, peers0, reg0 := s.owner.requests.Load(), s.peerRequests(), s.registry.Load()
			const intervals = 4
			imagetest.WaitUntil(t, 5*time.Second, "4 more intervals", func() bool { return s.owner.requests.Load() >= owner0+intervals })
			owner1, peers1, reg1 := s.owner.requests.Load(), s.peerRequests(), s.registry.Load()
			iv := float64(owner1 - owner0)
			if per := float64(peers1-peers0) / iv; per > 1 {
				t.Errorf("%d nodes: %.1f peer requests per interval while the owner heals; want 1 (the owner)", n, per)
			}
			if per := float64(reg1-reg0) / iv; per > 0 {
				t.Errorf("%d nodes: %.1f registry requests per interval while the owner heals; want 0", n, per)
			}

			imagetest.Push(t, s.base, testRepo, "v1", s.img) // the owner healed
			s.owner.healing.Store(false)
			s.owner.healed.Store(true)
			healedAt := time.Now()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the standing-by heal did not end within 10s of the owner's")
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if took := time.Since(healedAt); took > after {
				t.Errorf("the standing-by heal ended %s after the owner said it healed the root; want within 2 intervals", took)
			}
			if r.res.Pushed != 0 || imagetest.Metric(t, s.metrics, "regmend_heals_done_by_peer_total") != 1 || imagetest.Metric(t, s.metrics, "regmend_heal_takeovers_total") != 0 {
				t.Errorf("pushed %d; want the heal counted as done by a peer, and no takeover", r.res.Pushed)
			}
		})
	}
}

// TestStandingByCountsATakeoverAhead: the owner is alive but says nothing
// (stuck); the holder ranked second took the heal over and says it is
// healing. The holder ranked third counts that as progress rather than
// take over too, and ends when the second says it healed the root.
func TestStandingByCountsATakeoverAhead(t *testing.T) {
	const after = 400 * time.Millisecond // rank 2 takes over after 800ms without progress
	s := newStandingBy(t, 6, 2, after)
	second := s.ahead[1]
	second.healing.Store(true)
	const busy = 2 * time.Second
	pushed := make(chan struct{})
	time.AfterFunc(busy, func() {
		defer close(pushed)
		imagetest.Push(t, s.base, testRepo, "v1", s.img)
		second.healing.Store(false)
		second.healed.Store(true)
	})
	defer func() { <-pushed }()
	start := time.Now()
	res, err := s.healer.Heal(context.Background(), s.target)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < busy {
		t.Errorf("ended after %s, before the holder ahead healed the root at %s", took, busy)
	}
	if res.Pushed != 0 || imagetest.Metric(t, s.metrics, "regmend_heal_takeovers_total") != 0 || imagetest.Metric(t, s.metrics, "regmend_heals_done_by_peer_total") != 1 {
		t.Errorf("pushed %d; want no takeover while a holder ahead heals, and the heal counted as done by a peer", res.Pushed)
	}
}
