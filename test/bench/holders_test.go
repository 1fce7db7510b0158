package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
	"github.com/regmend/regmend/resolver/peers"
	"github.com/regmend/regmend/resolver/registry"
)

// What holders standing by cost while one of them heals a root: 16
// in-process nodes, each a real local content store holding the same
// orphan, a Healer in cluster mode and its peer endpoint (bearer token,
// loopback), all reaching one in-memory registry, each through its own
// counting front. Every node heals the root at once (start-up sweeps); the
// owner's uploads are held back holdersUpload each, so the others stand by
// for several intervals.

const (
	holdersNodes    = 16
	holdersTakeover = 2 * time.Second // an interval of 500ms
	holdersUpload   = 3 * time.Second
	holdersRepo     = "fleet"
)

// holderNode is one in-process node.
type holderNode struct {
	id       string
	healer   *heal.Healer
	metrics  *prometheus.Registry
	registry atomic.Int64 // requests this node sent the registry
	served   atomic.Int64 // requests its peer endpoint answered
	res      *heal.Result
	err      error
	ended    time.Time
}

func (n *holderNode) deferred(t *testing.T) bool {
	return imagetest.Metric(t, n.metrics, "regmend_heals_deferred_total") > 0
}

// holderFleet starts the nodes.
func holderFleet(t *testing.T) ([]*holderNode, heal.Target) {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	// The registry's name for every node; each node's hosts.toml points it
	// at the node's own front.
	const host = "edge.fleet:5000"
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 4, 64<<10)
	tok, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*holderNode, holdersNodes)
	handlers := make([]atomic.Pointer[http.Handler], holdersNodes)
	var urls []string
	for i := range nodes {
		n := &holderNode{metrics: prometheus.NewRegistry()}
		nodes[i] = n
		ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.served.Add(1)
			(*handlers[i].Load()).ServeHTTP(w, r)
		}))
		t.Cleanup(ep.Close)
		p, err := peers.ParsePeer(ep.URL)
		if err != nil {
			t.Fatal(err)
		}
		n.id, urls = p.ID, append(urls, ep.URL)
	}
	for i, n := range nodes {
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.registry.Add(1)
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
				time.Sleep(holdersUpload) // a slow link: the owner heals for a while
			}
			reg.ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)
		hostsDir := t.TempDir()
		imagetest.WriteHostsTOML(t, hostsDir, host, fmt.Sprintf("server = %q\n", front.URL))
		cs, _ := imagetest.LocalStore(t)
		imagetest.WriteLocal(t, cs, host, holdersRepo, img)
		remote, err := registry.NewRemote(registry.WithHostsDir(hostsDir), registry.WithRegistries(host))
		if err != nil {
			t.Fatal(err)
		}
		members, err := peers.NewMembership(peers.WithSelf(n.id), peers.WithStatic(urls...))
		if err != nil {
			t.Fatal(err)
		}
		client, err := peers.NewClient(members, secret.Static(tok))
		if err != nil {
			t.Fatal(err)
		}
		if n.healer, err = heal.NewHealer(cs, remote, heal.WithOwnership(peers.NewRanker(client), holdersTakeover, heal.NewOwnershipMetrics(n.metrics))); err != nil {
			t.Fatal(err)
		}
		handlers[i].Store(endpointOf(tok, cs, remote, n.healer))
	}
	return nodes, heal.Target{Registry: host, Repository: holdersRepo, Root: img.Root()}
}

// endpointOf is a node's peer endpoint, as the daemon builds it.
func endpointOf(tok secret.Token, cs ctrcontent.Store, allowed mirror.Allowlist, h *heal.Healer) *http.Handler {
	of := func(reg, repo string, d digest.Digest) heal.Target {
		t := heal.Target{Registry: reg, Repository: repo}
		t.Root.Digest = d
		return t
	}
	var ep http.Handler = peers.NewEndpoint(secret.Static(tok), mirror.New(cs, allowed), mirror.New(cs, allowed), nil,
		peers.WithHealing(func(reg, repo string, d digest.Digest) bool { return h.Healing(of(reg, repo, d)) }),
		peers.WithHealed(func(reg, repo string, d digest.Digest) (time.Time, bool) { return h.Healed(of(reg, repo, d)) }))
	return &ep
}

// snapshot is the fleet's request counts at one moment.
type snapshot struct {
	registry []int64 // by node
	peers    int64   // every endpoint's
}

func snap(nodes []*holderNode) snapshot {
	s := snapshot{registry: make([]int64, len(nodes))}
	for i, n := range nodes {
		s.registry[i] = n.registry.Load()
		s.peers += n.served.Load()
	}
	return s
}

// holderPhase is what one deferred holder sent in a phase, on average.
type holderPhase struct{ registry, peers float64 }

// phase averages b-a over the holders (every node but owner); peers counts
// every request the endpoints served, the owner's too.
func phase(a, b snapshot, owner int) holderPhase {
	var reg int64
	for i := range a.registry {
		if i != owner {
			reg += b.registry[i] - a.registry[i]
		}
	}
	h := float64(len(a.registry) - 1)
	return holderPhase{float64(reg) / h, float64(b.peers-a.peers) / h}
}

// holderRun is one measurement of the fleet.
type holderRun struct {
	deferral, standing, after holderPhase
	intervals                 float64 // the owner's heal, in intervals of T/4
	standingEnd               time.Duration
}

// measureHolders heals the fleet's root on every node at once.
func measureHolders(t *testing.T) holderRun {
	nodes, target := holderFleet(t)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	var wg sync.WaitGroup
	owner := atomic.Int32{}
	owner.Store(-1)
	s0 := snap(nodes)
	for i, n := range nodes {
		wg.Go(func() {
			n.res, n.err = n.healer.Heal(ctx, target)
			n.ended = time.Now()
			if n.err == nil && n.res.Pushed > 0 {
				owner.CompareAndSwap(-1, int32(i))
			}
		})
	}
	imagetest.WaitUntil(t, 30*time.Second, "every holder but one deferred", func() bool {
		d := 0
		for _, n := range nodes {
			if n.deferred(t) {
				d++
			}
		}
		return d == len(nodes)-1
	})
	// A holder counts its deferral before its one plan: let the plans end.
	time.Sleep(holdersTakeover / 4)
	t1, s1 := time.Now(), snap(nodes)
	imagetest.WaitUntil(t, 60*time.Second, "the owner healed", func() bool { return owner.Load() >= 0 })
	o := int(owner.Load())
	t2, s2 := nodes[o].ended, snap(nodes)
	wg.Wait()
	s3 := snap(nodes)
	var last time.Time
	for i, n := range nodes {
		if n.err != nil {
			t.Fatalf("node %s: %v", n.id, n.err)
		}
		if i != o && n.res.Pushed > 0 {
			t.Errorf("node %s pushed %d nodes: a holder standing by took the heal over", n.id, n.res.Pushed)
		}
		if n.ended.After(last) {
			last = n.ended
		}
	}
	return holderRun{
		deferral: phase(s0, s1, o), standing: phase(s1, s2, o), after: phase(s2, s3, o),
		intervals: t2.Sub(t1).Seconds() / (holdersTakeover / 4).Seconds(), standingEnd: last.Sub(t2),
	}
}

// benchHolders reports what holders standing by cost.
func benchHolders(_ context.Context, t *testing.T, rep *report) {
	r := measureHolders(t)
	perIv := holderPhase{r.standing.registry / r.intervals, r.standing.peers / r.intervals}
	f := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	rep.add(section{
		title: fmt.Sprintf("6. Cluster mode: what %d holders standing by cost", holdersNodes-1),
		intro: fmt.Sprintf("%d in-process nodes (containerd's local content store each, the same orphan of 4 layers, a Healer with ownership and its peer endpoint, bearer token, loopback) heal one root at once, "+
			"as their start-up sweeps do. They reach go-containerregistry's in-memory registry, each through its own counting front; the owner's uploads are held %s each, so the others stand by "+
			"(takeover_after %s: an interval of %s). Requests per deferred holder, averaged over the %d; peer requests are those the endpoints served.",
			holdersNodes, holdersUpload, holdersTakeover, holdersTakeover/4, holdersNodes-1),
		header: []string{"phase", "registry requests per holder", "peer requests per holder"},
		rows: [][]string{
			{"deferral: rank (probe every peer), nudge the owner, one plan (the owner's own ranking included in peers)", f(r.deferral.registry), f(r.deferral.peers)},
			{fmt.Sprintf("standing by, per interval (%.1f intervals while the owner healed)", r.intervals), f(perIv.registry), f(perIv.peers)},
			{fmt.Sprintf("after the owner healed: one plan, the heal's own (all ended %s later)", r.standingEnd.Round(10*time.Millisecond)), f(r.after.registry), f(r.after.peers)},
		},
	})
	rep.claim(fmt.Sprintf("requests per holder standing by, per interval, %d nodes (registry + peers)", holdersNodes), f(perIv.registry+perIv.peers), "", "",
		"≤ 1 (the owner)", perIv.registry+perIv.peers <= 1.05)
}
