package peers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/resolver/heal"
)

var _ heal.Ownership = (*Ranker)(nil)

// Ranker ranks this node among the live holders of a root: the peers that
// answer a probe HEAD of the root with 200 within the timeout, and this
// node. Holders are ordered by rendezvous hashing of (root digest, peer
// identity), so every node that sees the same holders computes the same
// order without talking further, and a holder joining or leaving moves
// only the roots it ranks first. Only holders are ranked, so the owner can
// always heal; a node that lacks the root never is.
type Ranker struct {
	client *Client
}

// NewRanker ranks through c's membership and peers.
func NewRanker(c *Client) *Ranker { return &Ranker{client: c} }

// Turn returns this node's rank for t's root, and whether a holder ranked
// before it says it is healing the root now. When it is not first, it asks
// the first holder for the root (an ordinary HEAD, which queues a heal
// there), so an owner that never saw a request heals at once rather than
// after a takeover.
func (r *Ranker) Turn(ctx context.Context, t heal.Target) (heal.Turn, error) {
	self := r.client.members.Self()
	if self == "" {
		return heal.Turn{}, fmt.Errorf("rank %s: this node has no peer identity (no peer endpoint): %w", t, errdefs.ErrFailedPrecondition)
	}
	ref := refOf(t.Registry, t.Repository, t.Root.Digest)
	holders := r.client.find(ctx, ref, true, false)
	ids := []string{self}
	byID := map[string]holder{}
	for _, h := range holders {
		ids = append(ids, h.peer.ID)
		byID[h.peer.ID] = h
	}
	order := Rendezvous(t.Root.Digest, ids)
	turn := heal.Turn{Rank: slices.Index(order, self)}
	turn.Ahead = order[:turn.Rank]
	for _, id := range turn.Ahead {
		turn.AheadHealing = turn.AheadHealing || byID[id].healing
		turn.AheadHealed = later(turn.AheadHealed, byID[id].healed)
	}
	log.G(ctx).WithField("root", t.Root.Digest).WithField("holders", order).WithField("rank", turn.Rank).
		WithField("ahead_healing", turn.AheadHealing).Debug("ranked among holders")
	if turn.Rank > 0 && !turn.AheadHealing {
		// The nudge is bounded like every lookup: a heal's own context may
		// have no deadline (check --fix) or a long one.
		nctx, cancel := context.WithTimeout(ctx, r.client.timeout)
		r.client.head(nctx, byID[order[0]].peer, ref, false)
		cancel()
	}
	return turn, nil
}

// Ask probes the owner (turn.Ahead[0]) for t's root: one request, under
// the peer timeout. While the owner says it is not healing (and has ended
// no heal since the last answer), it also probes the other holders before
// this node, MaxRankWait in all at most,
// so that a holder that took the heal over from a stuck owner counts as
// progress. It never asks the registry, nor the peers ranked after this
// node, so a standing-by node's cost does not grow with the fleet. An
// owner that fails, answers 404 or has left the membership is an error:
// the caller ranks again.
func (r *Ranker) Ask(ctx context.Context, t heal.Target, turn heal.Turn) (heal.Turn, error) {
	if len(turn.Ahead) == 0 {
		return turn, fmt.Errorf("ask about %s: no holder ranks before this node: %w", t, errdefs.ErrFailedPrecondition)
	}
	ref := refOf(t.Registry, t.Repository, t.Root.Digest)
	byID := map[string]Peer{}
	for _, p := range r.client.members.Peers() {
		byID[p.ID] = p
	}
	ask := func(id string) *holder {
		p, ok := byID[id]
		if !ok || r.client.isDown(p) {
			return nil
		}
		hctx, cancel := context.WithTimeout(ctx, r.client.timeout)
		defer cancel()
		return r.client.head(hctx, p, ref, true)
	}
	owner := ask(turn.Ahead[0])
	if owner == nil {
		return turn, fmt.Errorf("ask owner %s about %s: no answer as a holder: %w", turn.Ahead[0], t, errdefs.ErrUnavailable)
	}
	next := turn
	next.AheadHealing, next.AheadHealed = owner.healing, later(turn.AheadHealed, owner.healed)
	// An owner that says it ended a heal since the last answer needs no
	// second opinion: the caller asks the registry.
	fresh := owner.healed.After(turn.AheadHealed.Add(time.Second))
	if !owner.healing && !fresh {
		others := turn.Ahead[1:min(len(turn.Ahead), heal.MaxRankWait)]
		answers := make([]*holder, len(others))
		var wg sync.WaitGroup
		for i, id := range others {
			wg.Go(func() { answers[i] = ask(id) })
		}
		wg.Wait()
		for _, h := range answers {
			if h != nil {
				next.AheadHealing = next.AheadHealing || h.healing
				next.AheadHealed = later(next.AheadHealed, h.healed)
			}
		}
	}
	log.G(ctx).WithField("root", t.Root.Digest).WithField("owner", turn.Ahead[0]).WithField("ahead_healing", next.AheadHealing).
		WithField("ahead_healed", next.AheadHealed).Debug("asked the holders before this node")
	return next, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Rendezvous orders ids by their rendezvous (highest random weight) score
// for d: the first 8 bytes of SHA-256(d, 0, id), highest first, ties by id.
func Rendezvous(d digest.Digest, ids []string) []string {
	type scored struct {
		id    string
		score uint64
	}
	s := make([]scored, 0, len(ids))
	for _, id := range ids {
		if slices.ContainsFunc(s, func(x scored) bool { return x.id == id }) {
			continue
		}
		sum := sha256.Sum256([]byte(d.String() + "\x00" + id))
		s = append(s, scored{id, binary.BigEndian.Uint64(sum[:8])})
	}
	slices.SortFunc(s, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.id
	}
	return out
}
