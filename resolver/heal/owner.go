package heal

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
)

// Ownership ranks this node among the live nodes of a fleet that hold a
// root, so that one of them heals it and the others stand by.
type Ownership interface {
	// Turn returns this node's place among the live holders of t.Root.
	// An error means the fleet could not be asked; the node then heals as
	// a single node does.
	Turn(ctx context.Context, t Target) (Turn, error)
}

// Turn is a node's place among the holders of a root.
type Turn struct {
	// Rank is 0 for the node that heals at once.
	Rank int
	// AheadHealing: a holder ranked before this node says it is healing the
	// root now (Healer.Healing). A standing-by node counts that as
	// progress, so a slow upload (a large blob) is not taken over.
	AheadHealing bool
}

// DefaultTakeoverAfter is how long the registry may show no progress on a
// root before the next holder in rank takes its heal over.
const DefaultTakeoverAfter = 20 * time.Second

// WithOwnership makes each heal wait its turn among the fleet's holders of
// its root. Rank 0 heals at once. A node of rank r > 0 re-plans and re-ranks
// every quarter of takeoverAfter (at most every 5s), and heals itself when
// nothing stops it any more:
//   - it becomes rank 0 (the nodes before it stopped answering: dead,
//     killed, partitioned), or
//   - the registry has shown no progress (no fewer nodes or bytes missing,
//     and no holder before it healing the root) for min(r, MaxRankWait) ×
//     takeoverAfter (the owner is alive but stuck, or cannot reach the
//     registry).
//
// It stops waiting as soon as nothing is missing, and the heal then finds
// the registry whole. A Healer without it heals at once (`regmend check
// --fix`). m may be nil.
func WithOwnership(o Ownership, takeoverAfter time.Duration, m *OwnershipMetrics) HealerOption {
	return func(h *Healer) error {
		if takeoverAfter <= 0 {
			return fmt.Errorf("takeover_after %s: must be positive: %w", takeoverAfter, errdefs.ErrInvalidArgument)
		}
		h.owner = &ownership{o: o, after: takeoverAfter, metrics: m}
		return nil
	}
}

// MaxRankWait caps the ranks a takeover waits for: when the first
// MaxRankWait holders all make no progress, the rest take over together
// rather than wait longer still.
const MaxRankWait = 4

type ownership struct {
	o       Ownership
	after   time.Duration
	metrics *OwnershipMetrics
}

// awaitTurn returns when this node should heal t (or ctx is done, with its
// error).
func (h *Healer) awaitTurn(ctx context.Context, t Target) (err error) {
	if h.owner == nil {
		return nil
	}
	turn, err := h.owner.o.Turn(ctx, t)
	if err != nil {
		log.G(ctx).WithError(err).Debug("ownership unknown; healing as a single node")
		return nil
	}
	rank := turn.Rank
	if rank == 0 {
		return nil
	}
	h.owner.metrics.count(decisionDeferred)
	// Waiting needs no heal slot: hand the caller's back (the queue's
	// worker), and take one again only to heal.
	if sl := slotFrom(ctx); sl != nil && sl.release() {
		defer func() {
			if err == nil {
				err = sl.acquire(ctx)
			}
		}()
	}
	poll := max(min(h.owner.after/4, 5*time.Second), 50*time.Millisecond)
	l := log.G(ctx).WithField("rank", rank)
	l.WithField("takeover_after", h.owner.after).Info("heal deferred to a peer that holds the root")
	count, bytes := -1, int64(-1)
	last := time.Now()
	for {
		plan, perr := h.Plan(ctx, t)
		if perr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.WithError(perr).Debug("re-check failed; healing")
			return nil
		}
		n, b := missing(plan)
		if n == 0 {
			h.owner.metrics.count(decisionByPeer)
			l.Debug("a peer healed the root")
			return nil
		}
		if count < 0 || n < count || b < bytes || turn.AheadHealing {
			count, bytes, last = n, b, time.Now()
		}
		limit := time.Duration(min(rank, MaxRankWait)) * h.owner.after
		if time.Since(last) >= limit {
			h.owner.metrics.count(decisionTakeover)
			l.WithField("missing", n).Warn("no progress by the owning peer; taking the heal over")
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(poll, time.Until(last.Add(limit))+time.Millisecond)):
		}
		if next, err := h.owner.o.Turn(ctx, t); err == nil {
			if turn, rank = next, next.Rank; rank == 0 {
				h.owner.metrics.count(decisionTakeover)
				l.WithField("missing", n).Warn("the holders ranked before this node stopped answering; taking the heal over")
				return nil
			}
		}
	}
}

// missing counts the nodes and bytes a plan would push.
func missing(p *Plan) (n int, bytes int64) {
	for _, node := range p.ToPush() {
		n++
		bytes += node.Size
	}
	return n, bytes
}

// OwnershipMetrics count what ownership decided. A nil *OwnershipMetrics
// records nothing.
type OwnershipMetrics struct {
	deferred, takeovers, byPeer prometheus.Counter
}

// NewOwnershipMetrics creates the metrics and registers them with reg.
func NewOwnershipMetrics(reg prometheus.Registerer) *OwnershipMetrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &OwnershipMetrics{
		deferred:  c("regmend_heals_deferred_total", "Heals this node deferred to a peer that ranks before it for the root."),
		takeovers: c("regmend_heal_takeovers_total", "Deferred heals this node took over because the registry showed no progress."),
		byPeer:    c("regmend_heals_done_by_peer_total", "Deferred heals found complete: a peer healed the root."),
	}
	if reg != nil {
		reg.MustRegister(m.deferred, m.takeovers, m.byPeer)
	}
	return m
}

type decision int

const (
	decisionDeferred decision = iota
	decisionTakeover
	decisionByPeer
)

func (m *OwnershipMetrics) count(d decision) {
	if m == nil {
		return
	}
	switch d {
	case decisionDeferred:
		m.deferred.Inc()
	case decisionTakeover:
		m.takeovers.Inc()
	case decisionByPeer:
		m.byPeer.Inc()
	}
}

// slot is a heal slot its holder may hand back while it waits its turn.
type slot interface {
	// release hands the slot back, reporting whether it did (a holder may
	// have to keep it).
	release() bool
	// acquire takes a slot again, or fails when ctx is done.
	acquire(ctx context.Context) error
}

type slotKey struct{}

func withSlot(ctx context.Context, s slot) context.Context {
	return context.WithValue(ctx, slotKey{}, s)
}

func slotFrom(ctx context.Context) slot {
	s, _ := ctx.Value(slotKey{}).(slot)
	return s
}
