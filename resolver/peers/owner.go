package peers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

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
	for _, id := range order[:turn.Rank] {
		turn.AheadHealing = turn.AheadHealing || byID[id].healing
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
