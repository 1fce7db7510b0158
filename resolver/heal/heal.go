package heal

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/registry"
)

// Healer re-pushes what a registry lost from the local content store.
type Healer struct {
	store       content.Store
	remote      *registry.Remote
	concurrency int
	uploads     int
	deep        bool
	retention   Retention
	rounds      int
	progress    func(Progress)
	owner       *ownership
	inflight    inflight
	deny        Denier // deny.go
}

// Progress reports a heal's pushes as they complete.
type Progress struct {
	Target     Target
	Done       int // nodes pushed, mounted or found present
	Total      int // nodes to push
	BytesDone  int64
	BytesTotal int64
}

// WithPushProgress calls fn after each node a heal pushes, one call at a time.
// The default reports nothing.
func WithPushProgress(fn func(Progress)) HealerOption {
	return func(h *Healer) error { h.progress = fn; return nil }
}

// HealerOption configures a Healer.
type HealerOption func(*Healer) error

// WithConcurrency bounds the requests one heal has in flight, but for the
// uploads of blobs over 1 MiB (WithUploads). The default is
// DefaultConcurrency.
func WithConcurrency(n int) HealerOption {
	return func(h *Healer) error {
		if n < 1 {
			return fmt.Errorf("concurrency %d: must be at least 1: %w", n, errdefs.ErrInvalidArgument)
		}
		h.concurrency = n
		return nil
	}
}

// WithUploads bounds the uploads of blobs over 1 MiB one heal has in
// flight (smaller blobs and manifests follow WithConcurrency). The default
// is DefaultUploads.
func WithUploads(n int) HealerOption {
	return func(h *Healer) error {
		if n < 1 {
			return fmt.Errorf("uploads %d: must be at least 1: %w", n, errdefs.ErrInvalidArgument)
		}
		h.uploads = n
		return nil
	}
}

// WithDeepCheck also asks the registry for every blob of the manifests it
// holds. The default trusts a registry to keep the blobs of its manifests.
func WithDeepCheck(deep bool) HealerOption {
	return func(h *Healer) error { h.deep = deep; return nil }
}

// WithRetention sets what is bound to an orphan root after it is re-pushed.
// The default is RetainTag.
func WithRetention(r Retention) HealerOption {
	return func(h *Healer) error {
		if _, err := ParseRetention(string(r)); err != nil {
			return err
		}
		h.retention = r
		return nil
	}
}

// DefaultConcurrency is how many requests one heal has in flight to ask
// the registry what it holds, to upload blobs of 1 MiB or less, and to put
// manifests.
const DefaultConcurrency = 4

// DefaultUploads is how many uploads of blobs over 1 MiB one heal has in
// flight. A registry answers an upload's PUT only once the blob is synced
// to its disk (distribution's filesystem driver; the POST that starts it
// syncs too), so uploads in flight overlap those waits: the registry alone
// gains up to 8 and no further (make bench, 2 cores). A heal on 2 cores
// gains up to 4, then the digest check competes with the registry for the
// CPU; with cores to spare it follows the registry. See
// test/bench/TUNING.md.
const DefaultUploads = 8

// NewHealer returns a Healer reading store and writing through remote.
func NewHealer(store content.Store, remote *registry.Remote, opts ...HealerOption) (*Healer, error) {
	h := &Healer{store: store, remote: remote, concurrency: DefaultConcurrency, uploads: DefaultUploads, retention: RetainTag, rounds: 3}
	for _, o := range opts {
		if err := o(h); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Allowed reports whether the Healer may heal registry.
func (h *Healer) Allowed(registry string) bool { return h.remote.Allowed(registry) }

// Plan walks the closure of t.Root locally and asks the registry which nodes
// it holds. It writes nothing.
func (h *Healer) Plan(ctx context.Context, t Target) (*Plan, error) {
	sess, err := h.remote.Session(ctx, t.Registry, t.Repository)
	if err != nil {
		return nil, err
	}
	return h.plan(ctx, sess, t)
}

func (h *Healer) plan(ctx context.Context, sess *registry.Session, t Target) (*Plan, error) {
	closure, err := content.Walk(ctx, h.store, t.Root)
	if err != nil {
		return nil, fmt.Errorf("local closure of %s: %w: %w", t.Root.Digest, errLocalStore, err)
	}
	pl := planner{sess: sess, concurrency: h.concurrency, deep: h.deep, deny: &denial{deny: h.deny, t: t}}
	return pl.plan(ctx, t, closure)
}

// Heal pushes what the registry lacks and this node holds, leaves first, and
// binds a retention tag to an orphan root. Concurrent heals of one target
// share one run. A partial heal returns its result and an error that
// errdefs.IsNotFound recognises; the result lists what is unhealable.
func (h *Healer) Heal(ctx context.Context, t Target) (*Result, error) {
	return h.share(ctx, t, nil, nil) // inflight.go
}

// heal runs one heal of t. sl is the caller's heal slot, handed back while
// it waits its turn (nil: none); planned, made by Plan for t just before
// (or nil), is the first round's plan, so a check that fixes what it found
// asks the registry about each node once.
func (h *Healer) heal(ctx context.Context, t Target, sl slot, planned *Plan) (*Result, error) {
	start := time.Now()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("target", t.String()))
	deferred, err := h.awaitTurn(ctx, t, sl)
	if err != nil {
		return nil, err
	}
	// A plan made before waiting on a peer is stale by the time it is this
	// node's turn.
	if deferred || planned == nil || planned.sess == nil || planned.Target.String() != t.String() {
		planned = nil
	}
	defer h.inflight.start(t)()
	var sess *registry.Session
	if planned != nil {
		sess = planned.sess
	} else if sess, err = h.remote.Session(ctx, t.Registry, t.Repository); err != nil {
		return nil, err
	}
	res := &Result{Target: t, outcome: map[digest.Digest]Status{}}
	var (
		plan *Plan
		lost bool
	)
	for round := 1; ; round++ {
		if plan, err = planned, nil; round > 1 || plan == nil {
			plan, err = h.plan(ctx, sess, t)
		}
		if err != nil {
			return nil, err
		}
		if plan.Status(t.Root.Digest) == StatusDenied {
			// An entry added while this heal waited its turn.
			return nil, fmt.Errorf("heal %s: %s: %w", t, plan.Reason(t.Root.Digest), errDenied)
		}
		lost = lost || plan.lost
		if round == 1 {
			res.RootWasMissing = plan.Status(t.Root.Digest) != StatusPresent
		}
		err = h.push(ctx, sess, plan, res)
		// A GC between a blob upload and the manifest PUT makes the registry
		// answer BLOB_UNKNOWN: ask again and push what it lost meanwhile.
		if err == nil || !registry.IsChildUnknown(err) || round >= h.rounds {
			break
		}
		log.G(ctx).WithError(err).Info("registry lost content during the heal; checking again")
	}
	if err == nil {
		err = h.retain(ctx, sess, plan, res)
	}
	if err == nil && lost {
		// The registry lost content and may still claim it: what a fresh
		// node will pull must read back (confirm.go).
		res.ReadBack = true
		err = h.readBack(ctx, sess, plan, res)
	}
	res.finish(plan, sess, time.Since(start))
	if err != nil {
		return res, err
	}
	log.G(ctx).WithField("pushed", res.Pushed).WithField("bytes", res.BytesPushed).Debug("heal done")
	if err := partial(t, res); err != nil { // deny.go
		return res, err
	}
	return res, nil
}

// push uploads the plan's missing nodes: blobs concurrently, then manifests
// strictly children before parents.
func (h *Healer) push(ctx context.Context, sess *registry.Session, plan *Plan, res *Result) error {
	var blobs, manifests []*content.Node
	for _, n := range plan.ToPush() {
		if n.Kind.IsManifest() {
			manifests = append(manifests, n)
		} else {
			blobs = append(blobs, n)
		}
	}
	// Largest first: the heal ends when its last upload does, and a large
	// blob started last (after the uploads in flight) would run alone at
	// the end; small ones fill the slots the large ones free.
	slices.SortStableFunc(blobs, func(a, b *content.Node) int { return cmp.Compare(b.Size, a.Size) })
	var (
		mu   sync.Mutex
		prog = Progress{Target: plan.Target, Total: len(blobs) + len(manifests)}
	)
	for _, n := range plan.ToPush() {
		prog.BytesTotal += n.Size
	}
	record := func(n *content.Node, o registry.Outcome) {
		mu.Lock()
		defer mu.Unlock()
		if h.progress != nil {
			prog.Done++
			prog.BytesDone += n.Size
			h.progress(prog)
		}
		switch o {
		case registry.Pushed:
			res.outcome[n.Digest] = StatusPushed
			res.BytesPushed += n.Size
		case registry.Mounted:
			res.outcome[n.Digest] = StatusMounted
		}
	}
	// Blobs up to smallBlob (configs, mostly) cost the registry a sync,
	// not bandwidth: they go beside the uploads, not after them.
	i := slices.IndexFunc(blobs, func(n *content.Node) bool { return n.Size <= smallBlob })
	if i < 0 {
		i = len(blobs)
	}
	lanes, lctx := errgroup.WithContext(ctx)
	lanes.Go(func() error { return h.pushAll(lctx, sess, plan.Target, blobs[:i], h.uploads, plan.lost, record) })
	lanes.Go(func() error { return h.pushAll(lctx, sess, plan.Target, blobs[i:], h.concurrency, plan.lost, record) })
	if err := lanes.Wait(); err != nil {
		return err
	}
	// Manifests a level at a time, concurrently within a level: every
	// child manifest before the index that names it. (The root's retention
	// tag is put after the root, by retain: a tag PUT racing the digest PUT
	// could be accepted just before a GC takes a blob, and the re-plan would
	// then find the manifest present and look no further.)
	for _, level := range levels(manifests) {
		if err := h.pushAll(ctx, sess, plan.Target, level, h.concurrency, plan.lost, record); err != nil {
			return err
		}
	}
	return nil
}

// smallBlob is the largest blob that does not take an upload slot.
const smallBlob = 1 << 20

// pushAll pushes nodes, limit at a time, recording each outcome.
func (h *Healer) pushAll(ctx context.Context, sess *registry.Session, t Target, nodes []*content.Node, limit int, lost bool, record func(*content.Node, registry.Outcome)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for _, n := range nodes {
		g.Go(func() error {
			o, err := h.pushNode(gctx, sess, t, n, lost)
			if err != nil {
				return err
			}
			record(n, o)
			return nil
		})
	}
	return g.Wait()
}

// levels groups manifests (children before parents, as a plan lists them)
// by height: manifests over blobs only first, then those over them.
func levels(manifests []*content.Node) [][]*content.Node {
	height := map[digest.Digest]int{}
	var out [][]*content.Node
	for _, n := range manifests {
		l := 0
		for _, c := range n.Children {
			if h, ok := height[c.Digest]; ok {
				l = max(l, h+1)
			}
		}
		height[n.Digest] = l
		for len(out) <= l {
			out = append(out, nil)
		}
		out[l] = append(out[l], n)
	}
	return out
}

// pushNode pushes one node the plan found missing, with retries; each try
// re-reads local content. The plan's HEAD was the presence check, so the
// push asks nothing first: a blob is uploaded (or mounted), a manifest put
// by digest. When the registry lost content (lost), a mount is read back
// before it is believed: the registry decides it from the same stale
// answer as its HEAD. One it does not serve is uploaded instead. The deny
// list is asked again first: the plan may predate an entry.
func (h *Healer) pushNode(ctx context.Context, sess *registry.Session, t Target, n *content.Node, lost bool) (registry.Outcome, error) {
	if entry, ok := h.deniedNow(t, n.Digest); ok { // deny.go
		return 0, fmt.Errorf("push %s %s: %s: %w", n.Kind, n.Digest, deniedReason(entry), errDenied)
	}
	open := func() (io.ReadCloser, error) {
		rc, err := content.Open(ctx, h.store, n.Descriptor)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errLocalStore, err)
		}
		return rc, nil
	}
	var out registry.Outcome
	mount := true
	err := sess.Retry(ctx, func() error {
		var err error
		if n.Kind.IsManifest() {
			out, err = registry.Pushed, sess.PutManifest(ctx, n.Digest.String(), n.Descriptor, open)
			return err
		}
		desc := n.Descriptor
		if mount {
			desc.Annotations = content.SourceAnnotations(n.Labels) // cross-repo mount candidates
		}
		if out, err = sess.Upload(ctx, desc, open); err != nil || out != registry.Mounted || !lost {
			return err
		}
		if err = sess.ConfirmBlob(ctx, n.Descriptor); registry.IsUnserved(err) {
			log.G(ctx).WithField("digest", n.Digest).Info("registry mounted a blob it does not serve; uploading it")
			mount = false
			out, err = sess.Upload(ctx, n.Descriptor, open)
		}
		return err
	})
	return out, err
}
