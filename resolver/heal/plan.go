package heal

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/registry"
)

// Target names what to heal: a root descriptor in a registry's repository.
type Target struct {
	Registry   string             `json:"registry"`
	Repository string             `json:"repository"`
	Root       ocispec.Descriptor `json:"root"`
}

// TargetOf returns the target of a local image.
func TargetOf(img content.Image) Target {
	return Target{Registry: img.Registry, Repository: img.Repository, Root: img.Root}
}

// String returns registry/repository@digest, the pull reference of the root.
func (t Target) String() string {
	return t.Registry + "/" + t.Repository + "@" + t.Root.Digest.String()
}

// Status is what is, or after a heal what became, of a node at the registry.
type Status string

// Node statuses.
const (
	// StatusPresent: the registry holds it; nothing to do.
	StatusPresent Status = "present"
	// StatusMissing: the registry lacks it and this node can push it.
	StatusMissing Status = "missing"
	// StatusUnhealable: the registry lacks it and it cannot be pushed:
	// absent locally too, unreadable, or a child is unhealable.
	StatusUnhealable Status = "unhealable"
	// StatusUnchecked: a blob of a manifest the registry holds. Registries
	// keep the blobs of the manifests they hold, so it is not asked unless
	// the check is deep.
	StatusUnchecked Status = "unchecked"
	// StatusSkipped: a non-distributable layer, never pushed.
	StatusSkipped Status = "skipped"
	// StatusPushed: uploaded by this heal.
	StatusPushed Status = "pushed"
	// StatusMounted: mounted from another repository of the registry.
	StatusMounted Status = "mounted"
)

// Plan is a closure with the registry's view of each node.
type Plan struct {
	Target  Target
	Closure *content.Closure
	status  map[digest.Digest]Status
	reason  map[digest.Digest]string
	// lost: the registry lacks a manifest of the closure, so the rest of
	// the closure was read rather than asked (confirm.go).
	lost bool
	// sess asked the registry; a heal handed the plan goes on with it.
	sess *registry.Session
}

// Status returns a node's status in the plan.
func (p *Plan) Status(d digest.Digest) Status { return p.status[d] }

// Reason says why a node is unhealable or skipped.
func (p *Plan) Reason(d digest.Digest) string { return p.reason[d] }

// ToPush returns the nodes to push, leaves first.
func (p *Plan) ToPush() []*content.Node {
	var out []*content.Node
	for _, n := range p.Closure.Nodes() {
		if p.status[n.Digest] == StatusMissing {
			out = append(out, n)
		}
	}
	return out
}

// Count returns how many distinct nodes have status s.
func (p *Plan) Count(s Status) int {
	c := 0
	for _, n := range p.Closure.Nodes() {
		if p.status[n.Digest] == s {
			c++
		}
	}
	return c
}

// planner asks the registry about a closure.
type planner struct {
	sess        *registry.Session
	concurrency int
	deep        bool
	deny        *denial // deny.go
}

func (pl *planner) plan(ctx context.Context, t Target, closure *content.Closure) (*Plan, error) {
	p := &Plan{Target: t, Closure: closure, status: map[digest.Digest]Status{}, reason: map[digest.Digest]string{}, sess: pl.sess}
	nodes := closure.Nodes()
	remote := map[digest.Digest]bool{}

	// Manifests first: every one is asked, present locally or not, and a
	// present index does not stop the walk. Blobs only once a manifest is
	// missing, or when deep: a registry keeps the blobs of what it holds.
	var manifests, blobs []*content.Node
	for _, n := range nodes {
		if n.Kind.IsManifest() {
			manifests = append(manifests, n)
		}
	}
	if err := pl.ask(ctx, manifests, true, remote); err != nil {
		return nil, err
	}
	// A manifest missing is evidence that the registry lost content, and it
	// may still claim what it lost (a stale blob descriptor cache). Then the
	// rest of the closure is read, not asked: a blob's first byte replaces
	// its HEAD (one request either way), a manifest the registry holds is
	// read back by digest (confirm.go).
	p.lost = lossSeen(manifests, remote)
	wanted := map[digest.Digest]bool{}
	for _, n := range manifests {
		if n.Kind == content.KindManifest && (pl.deep || p.lost) {
			for _, c := range n.Children {
				if !wanted[c.Digest] && !c.Kind.IsManifest() {
					wanted[c.Digest] = true
					blobs = append(blobs, c)
				}
			}
		}
	}
	var (
		unserved map[digest.Digest]string
		err      error
	)
	if p.lost {
		unserved, err = pl.read(ctx, manifests, blobs, remote)
	} else {
		err = pl.ask(ctx, blobs, false, remote)
	}
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		p.status[n.Digest], p.reason[n.Digest] = classify(n, remote, wanted, p.status, pl.deny)
		if why, ok := unserved[n.Digest]; ok && p.reason[n.Digest] == "" {
			p.reason[n.Digest] = why
		} else if ok {
			p.reason[n.Digest] += "; " + why
		}
	}
	return p, nil
}

// ask HEADs nodes concurrently, recording which exist.
func (pl *planner) ask(ctx context.Context, nodes []*content.Node, manifest bool, remote map[digest.Digest]bool) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pl.concurrency)
	for _, n := range nodes {
		if n.Foreign {
			continue
		}
		g.Go(func() error {
			ok, err := pl.sess.Exists(gctx, n.Descriptor, manifest)
			if err != nil {
				return fmt.Errorf("registry %s: is %s %s there: %w", pl.sess.Ref(""), n.Kind, n.Digest, err)
			}
			mu.Lock()
			remote[n.Digest] = ok
			mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// classify decides a node's status; children are classified before parents.
func classify(n *content.Node, remote, asked map[digest.Digest]bool, done map[digest.Digest]Status, dn *denial) (Status, string) {
	switch {
	case n.Foreign:
		return StatusSkipped, "non-distributable layer: registries do not store it"
	case remote[n.Digest]:
		return StatusPresent, ""
	case !n.Kind.IsManifest() && !asked[n.Digest]:
		return StatusUnchecked, ""
	case !n.Present && n.Kind == content.KindLayer:
		// Its manifest is held (it names the layer), the layer is not.
		return StatusUnhealable, "absent in the registry and in the local content store " +
			"(containerd deletes unpacked layers when CRI's discard_unpacked_layers is true)"
	case !n.Present:
		return StatusUnhealable, "absent in the registry and in the local content store"
	case n.Err != nil:
		return StatusUnhealable, n.Err.Error()
	}
	// Pushable but for the deny list (deny.go).
	if entry, ok := dn.denied(n); ok {
		return StatusDenied, deniedReason(entry)
	}
	for _, c := range n.Children {
		switch done[c.Digest] {
		case StatusUnhealable:
			return StatusUnhealable, fmt.Sprintf("its %s %s is unhealable", c.Kind, c.Digest)
		case StatusDenied:
			return StatusUnhealable, fmt.Sprintf("its %s %s is denied by the deny list", c.Kind, c.Digest)
		}
	}
	return StatusMissing, ""
}

// errNotHealable marks a heal that left nodes the registry still lacks.
var errNotHealable = fmt.Errorf("content absent in the registry and locally: %w", errdefs.ErrNotFound)

// lossSeen reports whether the registry lacks a manifest it was asked
// about: a registry that lost a root or a child manifest may have lost its
// blobs while still answering HEAD 200 for them (a stale descriptor cache).
func lossSeen(manifests []*content.Node, remote map[digest.Digest]bool) bool {
	for _, n := range manifests {
		if !n.Foreign && !remote[n.Digest] {
			return true
		}
	}
	return false
}

// read reads, concurrently, each blob's first byte and each manifest the
// registry's HEAD said it holds, and records as present only what it
// serves; for what it claims and does not serve, why. It runs only on
// evidence of loss: a held manifest then costs a GET beside its HEAD.
func (pl *planner) read(ctx context.Context, manifests, blobs []*content.Node, remote map[digest.Digest]bool) (map[digest.Digest]string, error) {
	var todo []*content.Node
	for _, n := range manifests {
		if remote[n.Digest] {
			todo = append(todo, n)
		}
	}
	for _, n := range blobs {
		if !n.Foreign {
			todo = append(todo, n)
		}
	}
	var mu sync.Mutex
	unserved := map[digest.Digest]string{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pl.concurrency)
	for _, n := range todo {
		g.Go(func() error {
			err := confirmNode(gctx, pl.sess, n)
			if err != nil && !registry.IsUnserved(err) {
				return fmt.Errorf("registry %s: does it serve %s %s: %w", pl.sess.Ref(""), n.Kind, n.Digest, err)
			}
			mu.Lock()
			defer mu.Unlock()
			remote[n.Digest] = err == nil
			if err != nil && !registry.IsAbsent(err) {
				unserved[n.Digest] = "the registry claims it and does not serve it: " + err.Error()
			}
			return nil
		})
	}
	return unserved, g.Wait()
}
