package peers

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
	"github.com/regmend/regmend/resolver/registry"
)

// memRegistry serves go-containerregistry's in-memory registry and returns
// its base URL, host and a hosts directory that reaches it.
func memRegistry(t *testing.T) (base, host, hostsDir string) {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	hostsDir = t.TempDir()
	os.MkdirAll(filepath.Join(hostsDir, host), 0o755)
	if err := os.WriteFile(filepath.Join(hostsDir, host, "hosts.toml"), []byte(fmt.Sprintf("server = %q\n", srv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, host, hostsDir
}

// takeoverSetup is a node that holds an orphan and ranks second among its
// holders, behind owner: a real peer endpoint over a real mirror of a store
// holding the root, whose heal queue only records requests, so it holds the
// root but never heals.
type takeoverSetup struct {
	base       string
	img        *imagetest.Object
	target     heal.Target
	healer     *heal.Healer
	owner      *httptest.Server
	ownerQueue *recordingQueue // the owner's nudges: heal requests it received
	healing    atomic.Bool     // the owner says it is healing the root
	healed     atomic.Bool     // the owner says it healed the root
	metrics    *prometheus.Registry
}

func newTakeoverSetup(t *testing.T, takeoverAfter time.Duration) *takeoverSetup {
	t.Helper()
	s := &takeoverSetup{metrics: prometheus.NewRegistry(), ownerQueue: &recordingQueue{}}
	var host, hostsDir string
	s.base, host, hostsDir = memRegistry(t)
	cs, _ := imagetest.LocalStore(t)
	s.img = imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 2, 4096)
	imagetest.WriteLocal(t, cs, host, testRepo, s.img)
	s.target = heal.Target{Registry: host, Repository: testRepo, Root: s.img.Root()}

	tok := newToken(t)
	ownerStore, _ := imagetest.LocalStore(t)
	imagetest.WriteLocal(t, ownerStore, host, testRepo, s.img)
	healing := func(registry, repo string, d digest.Digest) bool {
		return s.healing.Load() && registry == host && repo == testRepo && d == s.img.Desc.Digest
	}
	healed := func(registry, repo string, d digest.Digest) (time.Time, bool) {
		ok := s.healed.Load() && registry == host && repo == testRepo && d == s.img.Desc.Digest
		return time.Now(), ok
	}
	s.owner = httptest.NewServer(NewEndpoint(secret.Static(tok),
		mirror.New(ownerStore, allowAll{}, mirror.WithHealQueue(s.ownerQueue)), mirror.New(ownerStore, allowAll{}),
		NewMetrics(prometheus.NewRegistry()), WithHealing(healing), WithHealed(healed)))
	t.Cleanup(s.owner.Close)
	ownerPeer, _ := ParsePeer(s.owner.URL)
	// This node's identity: one that ranks behind the owner for the root.
	self := ""
	for port := 1; self == ""; port++ {
		id := "127.0.0.1:" + strconv.Itoa(port)
		if Rendezvous(s.img.Desc.Digest, []string{id, ownerPeer.ID})[0] == ownerPeer.ID {
			self = id
		}
	}
	members, err := NewMembership(WithSelf(self), WithStatic(s.owner.URL))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(members, secret.Static(tok), WithTimeout(500*time.Millisecond))
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

// nudges counts the owner's heal requests for the root.
func (s *takeoverSetup) nudges() int {
	n := 0
	for _, d := range s.ownerQueue.requests() {
		if d == s.img.Desc.Digest {
			n++
		}
	}
	return n
}

func (s *takeoverSetup) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := s.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func TestStuckOwnerTakenOver(t *testing.T) {
	const after = 400 * time.Millisecond
	s := newTakeoverSetup(t, after)
	start := time.Now()
	res, err := s.healer.Heal(context.Background(), s.target)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < after || took > after+2*time.Second {
		t.Errorf("heal took %s; a rank-1 node takes over after %s without progress", took, after)
	}
	if res.Pushed == 0 || !imagetest.Has(t, s.base, testRepo, "manifests", s.img.Desc.Digest.String()) {
		t.Errorf("the takeover healed nothing: %+v", res)
	}
	if s.counter(t, "regmend_heal_takeovers_total") != 1 || s.counter(t, "regmend_heals_deferred_total") != 1 {
		t.Errorf("deferred %v, takeovers %v; want 1 and 1", s.counter(t, "regmend_heals_deferred_total"), s.counter(t, "regmend_heal_takeovers_total"))
	}
	if s.nudges() < 1 {
		t.Error("the owner was never asked for the root (nudged)")
	}
}

func TestDeadOwnerTakenOverAtOnce(t *testing.T) {
	const after = 4 * time.Second // re-ranks every second
	s := newTakeoverSetup(t, after)
	go func() {
		// The owner dies once this node has deferred to it (or after 5s).
		deadline := time.Now().Add(5 * time.Second)
		for s.nudges() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		s.owner.CloseClientConnections()
		s.owner.Close()
	}()
	start := time.Now()
	if _, err := s.healer.Heal(context.Background(), s.target); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= after {
		t.Errorf("heal took %s; a dead owner drops out of the ranking at the next re-check (every %s)", took, after/4)
	}
	if !imagetest.Has(t, s.base, testRepo, "manifests", s.img.Desc.Digest.String()) || s.counter(t, "regmend_heal_takeovers_total") != 1 {
		t.Error("the dead owner's heal was not taken over")
	}
}

func TestOwnerHealsOthersStandBy(t *testing.T) {
	s := newTakeoverSetup(t, 10*time.Second)
	type result struct {
		res *heal.Result
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		res, err := s.healer.Heal(context.Background(), s.target)
		done <- result{res, err}
	}()
	eventually(t, "this node defers to the owner", func() bool { return s.nudges() > 0 })
	imagetest.Push(t, s.base, testRepo, "v1", s.img) // the owner heals
	s.healed.Store(true)
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the standing-by heal did not end within 10s of the owner's")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.Pushed != 0 {
		t.Errorf("a standing-by node pushed %d nodes after %s", r.res.Pushed, time.Since(start))
	}
	if s.counter(t, "regmend_heals_done_by_peer_total") != 1 || s.counter(t, "regmend_heal_takeovers_total") != 0 {
		t.Error("want the heal counted as done by a peer, and no takeover")
	}
}

// TestSlowOwnerNotTakenOver: an owner that says it is healing the root (a
// large upload in progress) is not taken over while it says so, though the
// registry shows no progress; once it stops, the node takes over after
// takeover_after.
func TestSlowOwnerNotTakenOver(t *testing.T) {
	const after = 400 * time.Millisecond
	s := newTakeoverSetup(t, after)
	s.healing.Store(true)
	const busy = 1500 * time.Millisecond
	time.AfterFunc(busy, func() { s.healing.Store(false) })
	start := time.Now()
	if _, err := s.healer.Heal(context.Background(), s.target); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < busy+after-100*time.Millisecond {
		t.Errorf("taken over after %s while the owner said it was healing for %s", took, busy)
	}
	if s.counter(t, "regmend_heal_takeovers_total") != 1 {
		t.Error("want one takeover once the owner stopped healing")
	}
}
