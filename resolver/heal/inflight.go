package heal

import (
	"context"
	"errors"
	"sync"
	"time"
)

// inflight shares one run of a heal among its concurrent callers, and
// records, by target, the heals running (past their turn) and when the
// last one ended having pushed what it could: what the peer endpoint tells
// standing-by peers.
type inflight struct {
	mu     sync.Mutex
	calls  map[string]*call
	run    map[string]int
	healed map[string]time.Time
}

// call is one run of a heal, shared by its callers.
type call struct {
	done   chan struct{}
	res    *Result
	err    error
	joined int // callers waiting for the run
}

// maxHealed bounds the ended heals remembered; older ones are pruned.
const maxHealed = 4096

// share heals t, or joins the heal of t already under way. sl is the
// caller's heal slot (nil: none); planned is the leader's first-round plan
// (nil: plan), unused by a caller that joins. The caller that runs the heal hands its
// slot back while it waits its turn among a fleet's holders (awaitTurn);
// one that joins hands it back while it waits for that run. Either takes
// a slot again before it returns, so a slot is held only by a heal at
// work: a heal waiting on another never holds one that heals of other
// roots need.
func (h *Healer) share(ctx context.Context, t Target, sl slot, planned *Plan) (*Result, error) {
	if err := h.refuseRoot(t); err != nil { // deny.go
		return nil, err
	}
	key := t.String()
	for {
		c, leader := h.inflight.join(key)
		if leader {
			return h.lead(ctx, key, t, sl, planned, c)
		}
		released := sl != nil && sl.release()
		select {
		case <-ctx.Done():
			h.inflight.leave(c)
			return nil, ctx.Err()
		case <-c.done:
		}
		if released {
			if err := sl.acquire(ctx); err != nil {
				return nil, err
			}
		}
		// The run takes the first caller's context, so it stops when that
		// caller (a daemon shutting down, a CLI interrupted, a deadline)
		// stops; this caller goes on with a run of its own.
		if ctx.Err() == nil && (errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded)) {
			continue
		}
		return c.res, c.err
	}
}

func (h *Healer) lead(ctx context.Context, key string, t Target, sl slot, planned *Plan, c *call) (*Result, error) {
	defer h.inflight.finish(key, c)
	c.res, c.err = h.heal(ctx, t, sl, planned)
	if c.err == nil || errors.Is(c.err, errNotHealable) {
		h.inflight.ended(key)
	}
	return c.res, c.err
}

// join returns the run of key under way, or starts one (leader).
func (f *inflight) join(key string) (c *call, leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.calls[key]; c != nil {
		c.joined++
		return c, false
	}
	if f.calls == nil {
		f.calls = map[string]*call{}
	}
	c = &call{done: make(chan struct{})}
	f.calls[key] = c
	return c, true
}

func (f *inflight) leave(c *call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.joined--
}

func (f *inflight) finish(key string, c *call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.calls, key)
	close(c.done)
}

// joined returns how many callers wait for the run of key (tests).
func (f *inflight) joinedCount(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.calls[key]; c != nil {
		return c.joined
	}
	return 0
}

// start records a heal of t past its turn; the returned func ends it.
func (f *inflight) start(t Target) func() {
	k := t.String()
	f.mu.Lock()
	if f.run == nil {
		f.run = map[string]int{}
	}
	f.run[k]++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.run[k]--; f.run[k] <= 0 {
			delete(f.run, k)
		}
	}
}

func (f *inflight) ended(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healed == nil {
		f.healed = map[string]time.Time{}
	}
	if len(f.healed) >= maxHealed {
		oldest := time.Now().Add(-time.Hour)
		for k, at := range f.healed {
			if at.Before(oldest) {
				delete(f.healed, k)
			}
		}
		if len(f.healed) >= maxHealed {
			clear(f.healed) // a burst of targets: forgetting costs a peer one re-plan
		}
	}
	f.healed[key] = time.Now()
}

// Healing reports whether this Healer is healing t now (past its turn, if
// it waits for one). The peer endpoint tells standing-by peers, which
// count it as progress.
func (h *Healer) Healing(t Target) bool {
	h.inflight.mu.Lock()
	defer h.inflight.mu.Unlock()
	return h.inflight.run[t.String()] > 0
}

// Healed returns when this Healer's last heal of t ended having pushed
// everything it holds that the registry lacked (nothing left it could
// push), and false if it has not healed t lately. The peer endpoint tells
// standing-by peers, which then ask the registry again.
func (h *Healer) Healed(t Target) (time.Time, bool) {
	h.inflight.mu.Lock()
	defer h.inflight.mu.Unlock()
	at, ok := h.inflight.healed[t.String()]
	return at, ok
}
