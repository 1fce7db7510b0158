package heal

// Joined returns how many callers wait for the run of t's heal under way.
func Joined(h *Healer, t Target) int { return h.inflight.joinedCount(t.String()) }
