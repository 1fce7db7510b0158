package resolver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/regmend/regmend/content"
)

// Healer re-pushes what a registry lost from the local content store.
type Healer struct {
	store       content.Store
	remote      *Remote
	concurrency int
	deep        bool
	retention   func(digest.Digest) string
	rounds      int
	progress    func(Progress)
	flights     singleflight.Group
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

// WithConcurrency bounds the requests one heal has in flight. The default is 4.
func WithConcurrency(n int) HealerOption {
	return func(h *Healer) error {
		if n < 1 {
			return fmt.Errorf("concurrency %d: must be at least 1: %w", n, errdefs.ErrInvalidArgument)
		}
		h.concurrency = n
		return nil
	}
}

// WithDeepCheck also asks the registry for every blob of the manifests it
// holds. The default trusts a registry to keep the blobs of its manifests.
func WithDeepCheck(deep bool) HealerOption {
	return func(h *Healer) error { h.deep = deep; return nil }
}

// WithRetention sets the retention tag bound to an orphan root after it is
// re-pushed: "tag" (the default) binds RetentionTag(digest), "none" binds
// nothing, so the next GC of untagged manifests deletes the orphan again.
func WithRetention(mode string) HealerOption {
	return func(h *Healer) error {
		switch mode {
		case "tag", "":
			h.retention = RetentionTag
		case "none":
			h.retention = nil
		default:
			return fmt.Errorf("retention %q: want tag or none: %w", mode, errdefs.ErrInvalidArgument)
		}
		return nil
	}
}

// NewHealer returns a Healer reading store and writing through remote.
func NewHealer(store content.Store, remote *Remote, opts ...HealerOption) (*Healer, error) {
	h := &Healer{store: store, remote: remote, concurrency: 4, retention: RetentionTag, rounds: 3}
	for _, o := range opts {
		if err := o(h); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Plan walks the closure of t.Root locally and asks the registry which nodes
// it holds. It writes nothing.
func (h *Healer) Plan(ctx context.Context, t Target) (*Plan, error) {
	sess, err := h.remote.session(ctx, t.Registry, t.Repository)
	if err != nil {
		return nil, err
	}
	return h.plan(ctx, sess, t)
}

func (h *Healer) plan(ctx context.Context, sess *session, t Target) (*Plan, error) {
	closure, err := content.Walk(ctx, h.store, t.Root)
	if err != nil {
		return nil, fmt.Errorf("local closure of %s: %w", t.Root.Digest, err)
	}
	pl := planner{sess: sess, concurrency: h.concurrency, deep: h.deep}
	return pl.plan(ctx, t, closure)
}

// Heal pushes what the registry lacks and this node holds, leaves first, and
// binds a retention tag to an orphan root. Concurrent heals of one target
// share one run. A partial heal returns its result and an error that
// errdefs.IsNotFound recognises; the result lists what is unhealable.
func (h *Healer) Heal(ctx context.Context, t Target) (*Result, error) {
	key := t.String()
	for {
		// The run takes the first caller's context, so it stops when that
		// caller (a daemon shutting down, a CLI interrupted) stops.
		mine := false
		ch := h.flights.DoChan(key, func() (any, error) { mine = true; return h.heal(ctx, t) })
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r := <-ch:
			if !mine && ctx.Err() == nil && (errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, context.DeadlineExceeded)) {
				continue // another caller's run stopped with that caller; this one goes on
			}
			res, _ := r.Val.(*Result)
			return res, r.Err
		}
	}
}

func (h *Healer) heal(ctx context.Context, t Target) (*Result, error) {
	start := time.Now()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("target", t.String()))
	sess, err := h.remote.session(ctx, t.Registry, t.Repository)
	if err != nil {
		return nil, err
	}
	res := &Result{Target: t, outcome: map[digest.Digest]Status{}}
	var plan *Plan
	for round := 1; ; round++ {
		if round > 1 {
			sess = sess.renew()
		}
		plan, err = h.plan(ctx, sess, t)
		if err != nil {
			return nil, err
		}
		if round == 1 {
			res.RootWasMissing = plan.Status(t.Root.Digest) != StatusPresent
		}
		err = h.push(ctx, sess, plan, res)
		// A GC between a blob upload and the manifest PUT makes the registry
		// answer BLOB_UNKNOWN: ask again and push what it lost meanwhile.
		if err == nil || !childUnknown(err) || round >= h.rounds {
			break
		}
		log.G(ctx).WithError(err).Info("registry lost content during the heal; checking again")
	}
	if err == nil {
		err = h.retain(ctx, sess, plan, res)
	}
	res.finish(plan, sess, time.Since(start))
	if err != nil {
		return res, err
	}
	log.G(ctx).WithField("pushed", res.Pushed).WithField("bytes", res.BytesPushed).Debug("heal done")
	if res.Unhealable > 0 {
		return res, fmt.Errorf("heal %s: %d of %d nodes could not be restored: %w", t, res.Unhealable, len(res.Nodes), errNotHealable)
	}
	return res, nil
}

// push uploads the plan's missing nodes: blobs concurrently, then manifests
// strictly children before parents.
func (h *Healer) push(ctx context.Context, sess *session, plan *Plan, res *Result) error {
	var blobs, manifests []*content.Node
	for _, n := range plan.ToPush() {
		if n.Kind.IsManifest() {
			manifests = append(manifests, n)
		} else {
			blobs = append(blobs, n)
		}
	}
	var (
		mu   sync.Mutex
		prog = Progress{Target: plan.Target, Total: len(blobs) + len(manifests)}
	)
	for _, n := range plan.ToPush() {
		prog.BytesTotal += n.Size
	}
	record := func(n *content.Node, o pushOutcome) {
		mu.Lock()
		defer mu.Unlock()
		if h.progress != nil {
			prog.Done++
			prog.BytesDone += n.Size
			h.progress(prog)
		}
		switch o {
		case outcomePushed:
			res.outcome[n.Digest] = StatusPushed
			res.BytesPushed += n.Size
		case outcomeMounted:
			res.outcome[n.Digest] = StatusMounted
		default:
			res.outcome[n.Digest] = StatusPresent
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.concurrency)
	for _, n := range blobs {
		g.Go(func() error {
			o, err := h.pushNode(gctx, sess, "@"+plan.Target.Root.Digest.String(), n)
			if err != nil {
				return err
			}
			record(n, o)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, n := range manifests {
		o, err := h.pushNode(ctx, sess, "@"+plan.Target.Root.Digest.String(), n)
		if err != nil {
			return err
		}
		record(n, o)
	}
	return nil
}

// pushNode pushes one node with retries; each try re-reads local content.
func (h *Healer) pushNode(ctx context.Context, sess *session, object string, n *content.Node) (pushOutcome, error) {
	desc := n.Descriptor
	desc.Annotations = content.SourceAnnotations(n.Labels) // cross-repo mount candidates
	var out pushOutcome
	err := sess.retry.do(ctx, func() error {
		var err error
		out, err = sess.push(ctx, object, desc, func() (io.ReadCloser, error) { return h.open(ctx, n) })
		return err
	})
	return out, err
}

// open streams a node's local bytes; manifests are small and read verified.
func (h *Healer) open(ctx context.Context, n *content.Node) (io.ReadCloser, error) {
	ra, err := h.store.ReaderAt(ctx, n.Descriptor)
	if err != nil {
		return nil, fmt.Errorf("local content %s: %w", n.Digest, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{ctrcontent.NewReader(ra), ra}, nil
}

// childUnknown reports a registry refusing a manifest because something it
// names is not there (distribution's MANIFEST_BLOB_UNKNOWN, BLOB_UNKNOWN).
func childUnknown(err error) bool {
	var us remoteerrors.ErrUnexpectedStatus
	if !errors.As(err, &us) || us.StatusCode != 400 && us.StatusCode != 404 {
		return false
	}
	b := string(us.Body)
	return strings.Contains(b, "BLOB_UNKNOWN") || strings.Contains(b, "MANIFEST_UNKNOWN")
}
