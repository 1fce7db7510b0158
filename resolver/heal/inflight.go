package heal

import "sync"

// inflight counts the heals running (past their turn) by target.
type inflight struct {
	mu  sync.Mutex
	run map[string]int
}

// start records a heal of t; the returned func ends it.
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

// Healing reports whether this Healer is healing t now (past its turn, if
// it waits for one). The peer endpoint tells standing-by peers, which
// count it as progress.
func (h *Healer) Healing(t Target) bool {
	h.inflight.mu.Lock()
	defer h.inflight.mu.Unlock()
	return h.inflight.run[t.String()] > 0
}
