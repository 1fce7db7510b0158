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
	// Turn returns this node's place among the live holders of t.Root,
	// asking every peer. An error means the fleet could not be asked; the
	// node then heals as a single node does.
	Turn(ctx context.Context, t Target) (Turn, error)
	// Ask asks the holders ranked before this node at turn (turn.Ahead) how
	// their heals of t stand, without ranking again: the owner, and only
	// while the owner says it is not healing, the others (MaxRankWait at
	// most), so that what a standing-by node costs does not grow with the
	// fleet. An error means the owner did not answer as a holder (gone, or
	// no longer holding the root): the node then ranks again with Turn.
	Ask(ctx context.Context, t Target, turn Turn) (Turn, error)
}

// Turn is a node's place among the holders of a root.
type Turn struct {
	// Rank is 0 for the node that heals at once.
	Rank int
	// AheadHealing: a holder ranked before this node says it is healing the
	// root now (Healer.Healing). A standing-by node counts that as
	// progress, so a slow upload (a large blob) is not taken over.
	AheadHealing bool
	// AheadHealed is when, by this node's clock, a holder ranked before
	// this node last ended a heal of the root having pushed what it could
	// (Healer.Healed); zero if none said. A standing-by node asks the
	// registry again only when this is later than its last look.
	AheadHealed time.Time
	// Ahead names the holders ranked before this node, the owner first, as
	// the Ownership identifies them (for Ask).
	Ahead []string
}

// DefaultTakeoverAfter is how long the registry may show no progress on a
// root before the next holder in rank takes its heal over.
const DefaultTakeoverAfter = 20 * time.Second

// WithOwnership makes each heal wait its turn among the fleet's holders of
// its root. Rank 0 heals at once. A node of rank r > 0 asks the registry
// once what is missing, then every quarter of takeoverAfter (at most every
// 5s) asks the holders before it how their heals stand (Ownership.Ask: one
// request while the owner heals), and heals itself when nothing stops it
// any more:
//   - it becomes rank 0 (the owner stopped answering and a new ranking puts
//     this node first: the nodes before it are dead, killed, partitioned),
//     or
//   - no progress for min(r, MaxRankWait) × takeoverAfter: no holder before
//     it said it was healing, and the registry, asked again each time one
//     of them ended a heal, showed no fewer nodes or bytes missing (the
//     owner is alive but stuck, or cannot reach the registry).
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
// error), and whether it deferred to a peer first. sl, the caller's heal
// slot, is handed back while it waits.
func (h *Healer) awaitTurn(ctx context.Context, t Target, sl slot) (deferred bool, err error) {
	if h.owner == nil {
		return false, nil
	}
	turn, err := h.owner.o.Turn(ctx, t)
	if err != nil {
		log.G(ctx).WithError(err).Debug("ownership unknown; healing as a single node")
		return false, nil
	}
	if turn.Rank == 0 {
		return false, nil
	}
	deferred = true
	h.owner.metrics.count(decisionDeferred)
	// Waiting needs no heal slot: hand the caller's back (the queue's
	// worker, the sweep's image slot), and take one again only to heal.
	if sl != nil && sl.release() {
		defer func() {
			if err == nil {
				err = sl.acquire(ctx)
			}
		}()
	}
	poll := max(min(h.owner.after/4, 5*time.Second), 50*time.Millisecond)
	l := log.G(ctx).WithField("rank", turn.Rank)
	l.WithField("takeover_after", h.owner.after).Info("heal deferred to a peer that holds the root")
	w := waiting{h: h, t: t, l: l}
	if done, err := w.look(ctx); done || err != nil {
		return deferred, err
	}
	last := time.Now()
	for {
		limit := time.Duration(min(turn.Rank, MaxRankWait)) * h.owner.after
		if time.Since(last) >= limit {
			// One last look: an owner of an older version says nothing of
			// heals it ended.
			fewer, done, err := w.again(ctx)
			if done || err != nil {
				return deferred, err
			}
			if fewer {
				last = time.Now()
				continue
			}
			h.owner.metrics.count(decisionTakeover)
			l.WithField("missing", w.count).Warn("no progress by the owning peer; taking the heal over")
			return deferred, nil
		}
		select {
		case <-ctx.Done():
			return deferred, ctx.Err()
		case <-time.After(min(poll, time.Until(last.Add(limit))+time.Millisecond)):
		}
		next, err := h.owner.o.Ask(ctx, t, turn)
		if err != nil {
			if ctx.Err() != nil {
				return deferred, ctx.Err()
			}
			l.WithError(err).Debug("the owner did not answer; ranking again")
			if next, err = h.owner.o.Turn(ctx, t); err != nil {
				continue
			}
			if next.Rank == 0 {
				h.owner.metrics.count(decisionTakeover)
				l.WithField("missing", w.count).Warn("the holders ranked before this node stopped answering; taking the heal over")
				return deferred, nil
			}
		}
		turn = next
		if turn.AheadHealing {
			last = time.Now()
		}
		if turn.AheadHealed.After(w.at) {
			fewer, done, err := w.again(ctx)
			if done || err != nil {
				return deferred, err
			}
			if fewer {
				last = time.Now()
			}
		}
	}
}

// waiting is a deferred heal's view of the registry: what was missing at
// its last look, and when that was.
type waiting struct {
	h      *Healer
	t      Target
	l      *log.Entry
	at     time.Time
	count  int
	bytes  int64
	looked bool
}

// look asks the registry what is missing. done: nothing is (a peer healed
// it), or the registry could not be asked (the node then heals, and its
// heal reports the failure).
func (w *waiting) look(ctx context.Context) (done bool, err error) {
	_, done, err = w.again(ctx)
	return done, err
}

// again looks once more; fewer reports progress since the last look.
func (w *waiting) again(ctx context.Context) (fewer, done bool, err error) {
	w.at = time.Now()
	plan, perr := w.h.Plan(ctx, w.t)
	if perr != nil {
		if ctx.Err() != nil {
			return false, true, ctx.Err()
		}
		w.l.WithError(perr).Debug("re-check failed; healing")
		return false, true, nil
	}
	n, b := missing(plan)
	if n == 0 {
		w.h.owner.metrics.count(decisionByPeer)
		w.l.Debug("a peer healed the root")
		return false, true, nil
	}
	fewer = w.looked && (n < w.count || b < w.bytes)
	if !w.looked || fewer {
		w.count, w.bytes = n, b
	}
	w.looked = true
	return fewer, false, nil
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

// slot is a heal slot its holder may hand back while it waits its turn,
// or for another caller's run of the same heal (worker.go).
type slot interface {
	// release hands the slot back, reporting whether it did (a holder may
	// have to keep it).
	release() bool
	// acquire takes a slot again, or fails when ctx is done.
	acquire(ctx context.Context) error
}
