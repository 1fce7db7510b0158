package heal

import (
	"context"
	"sync"
)

// worker is a queued heal's slot among the Queue's workers. A heal that
// waits its turn among a fleet's holders hands it back (release) and takes
// one again to heal (acquire), so waiting never stops this node's other
// heals, among them the roots it owns. At most the queue's size may wait
// without a slot; beyond that a heal keeps its slot while it waits.
type worker struct {
	q        *Queue
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
	if w.q.waiting.Add(1) > int64(cap(w.q.jobs)) {
		w.q.waiting.Add(-1)
		return false
	}
	w.held, w.waiting = false, true
	<-w.q.slots
	return true
}

func (w *worker) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case w.q.slots <- struct{}{}:
	case w.q.resume <- struct{}{}: // Run's idle slot, handed over
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopWaiting()
	if w.finished {
		<-w.q.slots // the job ended meanwhile: nothing will release it
		return context.Canceled
	}
	w.held = true
	return nil
}

// done ends the job: its slot, if it holds one, goes back.
func (w *worker) done() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finished = true
	w.stopWaiting()
	if w.held {
		w.held = false
		<-w.q.slots
	}
}

func (w *worker) stopWaiting() {
	if w.waiting {
		w.waiting = false
		w.q.waiting.Add(-1)
	}
}
