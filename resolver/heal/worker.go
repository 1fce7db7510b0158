package heal

import (
	"context"
	"sync"
	"sync/atomic"
)

// slots bounds how many heals run at once (the Queue's workers, the images
// Check handles at once). A heal that waits its turn among a fleet's
// holders (WithOwnership), or for another caller's run of the same heal
// (Healer.share), hands its slot back and takes one again to go on, so
// waiting never stops this node's other heals, among them the roots it
// owns. At most maxWaiting heals wait so; beyond that a heal keeps its slot
// while it waits. The slot is passed to the heal as an argument, never in
// a context, so every caller's is seen.
type slots struct {
	c          chan struct{}
	resume     chan struct{} // the Queue's: Run hands its idle slot over; nil for Check
	waiting    atomic.Int64
	maxWaiting int64
}

func newSlots(n, maxWaiting int) *slots {
	return &slots{c: make(chan struct{}, n), maxWaiting: int64(maxWaiting)}
}

// maxWaitingChecks bounds the heals a Check has waiting their turn without a
// slot.
const maxWaitingChecks = 64

// worker is one heal's hold on a slot.
type worker struct {
	s        *slots
	mu       sync.Mutex
	held     bool
	waiting  bool
	finished bool
}

var _ slot = (*worker)(nil)

func (w *worker) release() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.held || w.finished {
		return false
	}
	if w.s.waiting.Add(1) > w.s.maxWaiting {
		w.s.waiting.Add(-1)
		return false
	}
	w.held, w.waiting = false, true
	<-w.s.c
	return true
}

func (w *worker) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case w.s.c <- struct{}{}:
	case w.s.resume <- struct{}{}: // the Queue's idle slot, handed over
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopWaiting()
	if w.finished {
		<-w.s.c // the heal ended meanwhile: nothing will release it
		return context.Canceled
	}
	w.held = true
	return nil
}

// done ends the heal: its slot, if it holds one, goes back.
func (w *worker) done() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finished = true
	w.stopWaiting()
	if w.held {
		w.held = false
		<-w.s.c
	}
}

func (w *worker) stopWaiting() {
	if w.waiting {
		w.waiting = false
		w.s.waiting.Add(-1)
	}
}
