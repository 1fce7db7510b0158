package heal

import (
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/registry"
)

// NodeResult is one node of a closure as a plan or heal left it.
type NodeResult struct {
	Digest    digest.Digest     `json:"digest"`
	MediaType string            `json:"mediaType"`
	Kind      string            `json:"kind"`
	Size      int64             `json:"size"`
	Platform  *ocispec.Platform `json:"platform,omitempty"`
	Local     bool              `json:"local"`
	Status    Status            `json:"status"`
	Reason    string            `json:"reason,omitempty"`
}

// Result reports a heal: every node leaves first, what was pushed, and what
// could not be restored.
type Result struct {
	Target     Target       `json:"target"`
	Nodes      []NodeResult `json:"nodes"`
	Pushed     int          `json:"pushed"`
	Mounted    int          `json:"mounted"`
	Present    int          `json:"present"`
	Unhealable int          `json:"unhealable"`
	// Denied are the nodes the registry lacks that the deny list keeps
	// from being pushed (StatusDenied; Reason names the entry).
	Denied         int      `json:"denied"`
	BytesPushed    int64    `json:"bytesPushed"`
	RootWasMissing bool     `json:"rootWasMissing"`
	RetentionTags  []string `json:"retentionTags,omitempty"`
	// ReadBack: the registry lacked a manifest, so the closure was read,
	// not asked about, and what the heal wrote was read back after it.
	ReadBack bool          `json:"readBack,omitempty"`
	Requests int64         `json:"requests"`
	Duration time.Duration `json:"duration"`

	outcome map[digest.Digest]Status
}

// Healed reports whether the registry now holds the whole closure, bar
// non-distributable layers and what the deny list names.
func (r *Result) Healed() bool { return r.Unhealable == 0 && r.Denied == 0 }

// status is a node's final status: what the heal did, else what the plan saw.
func (r *Result) status(p *Plan, d digest.Digest) Status {
	if s, ok := r.outcome[d]; ok {
		return s
	}
	return p.Status(d)
}

func (r *Result) finish(p *Plan, sess *registry.Session, took time.Duration) {
	r.Duration, r.Requests = took, sess.Requests()
	if p == nil {
		return
	}
	r.Nodes = r.Nodes[:0]
	r.Pushed, r.Mounted, r.Present, r.Unhealable, r.Denied = 0, 0, 0, 0, 0
	for _, n := range p.Closure.Nodes() {
		s := r.status(p, n.Digest)
		r.Nodes = append(r.Nodes, nodeResult(n, s, p.Reason(n.Digest)))
		switch s {
		case StatusPushed:
			r.Pushed++
		case StatusMounted:
			r.Mounted++
		case StatusPresent, StatusUnchecked:
			r.Present++
		case StatusUnhealable, StatusMissing:
			r.Unhealable++
		case StatusDenied:
			r.Denied++
		}
	}
}

// Nodes lists a plan's nodes leaves first, as a Result does.
func (p *Plan) Nodes() []NodeResult {
	var out []NodeResult
	for _, n := range p.Closure.Nodes() {
		out = append(out, nodeResult(n, p.Status(n.Digest), p.Reason(n.Digest)))
	}
	return out
}

func nodeResult(n *content.Node, s Status, reason string) NodeResult {
	return NodeResult{
		Digest:    n.Digest,
		MediaType: n.MediaType,
		Kind:      n.Kind.String(),
		Size:      n.Size,
		Platform:  n.Platform,
		Local:     n.Present,
		Status:    s,
		Reason:    reason,
	}
}
