package heal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/resolver/registry"
)

// RootFinder finds what to heal for a digest requested from registry/repo:
// the topmost local descriptors whose closure holds it.
type RootFinder interface {
	Roots(ctx context.Context, registry, repo string, d digest.Digest) ([]ocispec.Descriptor, error)
}

// Queue heals in the background what the mirror served. It is bounded: when
// full, or while a registry keeps failing, requests are dropped (and counted)
// rather than piling up; the next request or sweep asks again. A digest
// healed a moment ago is not checked again on every request.
type Queue struct {
	healer  *Healer
	roots   RootFinder
	metrics *Metrics
	observe HealObserver
	workers int
	recheck time.Duration
	quiet   time.Duration
	timeout time.Duration
	jobs    chan queuedJob
	slots   *slots // one per worker (worker.go)

	mu      sync.Mutex
	pending map[healJob]bool
	recent  map[healJob]time.Time     // not before
	seen    map[string]time.Time      // registry/repo → last request
	down    map[string]registryStatus // registry → backoff
}

type healJob struct {
	registry, repo string
	digest         digest.Digest
}

type queuedJob struct {
	healJob
	at time.Time
}

// registryStatus is a failing registry's backoff: exponential from
// MinRegistryBackoff to MaxRegistryBackoff, reset by a heal that reaches it.
type registryStatus struct {
	until   time.Time
	backoff *backoff.ExponentialBackOff
}

// QueueOption configures a Queue.
type QueueOption func(*Queue) error

// Queue defaults.
const (
	DefaultQueueSize    = 256
	DefaultWorkers      = 2
	DefaultRecheckAfter = 5 * time.Minute
	// DefaultQuietPeriod is short enough not to delay a heal noticeably and
	// long enough for a pull's requests to finish first (make bench).
	DefaultQuietPeriod = 300 * time.Millisecond
	// healTimeout bounds one background heal, retries included.
	healTimeout = 10 * time.Minute
)

// WithQueueSize bounds the heals waiting. The default is DefaultQueueSize.
func WithQueueSize(n int) QueueOption {
	return func(q *Queue) error {
		if n < 1 {
			return fmt.Errorf("queue size %d: must be at least 1: %w", n, errdefs.ErrInvalidArgument)
		}
		q.jobs = make(chan queuedJob, n)
		return nil
	}
}

// WithWorkers sets how many heals run at once. The default is
// DefaultWorkers.
func WithWorkers(n int) QueueOption {
	return func(q *Queue) error {
		if n < 1 {
			return fmt.Errorf("workers %d: must be at least 1: %w", n, errdefs.ErrInvalidArgument)
		}
		q.workers = n
		return nil
	}
}

// WithRecheckAfter sets how long a healed digest is not checked again. The
// default is DefaultRecheckAfter.
func WithRecheckAfter(d time.Duration) QueueOption {
	return func(q *Queue) error { q.recheck = d; return nil }
}

// WithQuietPeriod makes a queued heal wait until its repository has had no
// request for d, so the heal does not compete for the node's disk and
// containerd with the pull it is serving. The default is
// DefaultQuietPeriod.
func WithQuietPeriod(d time.Duration) QueueOption {
	return func(q *Queue) error { q.quiet = d; return nil }
}

// WithQueueMetrics records queue depth, drops and heal outcomes.
func WithQueueMetrics(m *Metrics) QueueOption {
	return func(q *Queue) error { q.metrics = m; return nil }
}

// HealObserver is told of every heal a Queue runs, as its metrics are:
// the result (nil if the heal failed before planning), the error and how
// long it took. It runs on the worker and must not block.
type HealObserver func(t Target, res *Result, err error, took time.Duration)

// WithHealObserver tells f of every heal (the daemon's Kubernetes Events).
func WithHealObserver(f HealObserver) QueueOption {
	return func(q *Queue) error { q.observe = f; return nil }
}

// Backoff bounds for a failing registry: heals of its digests are dropped
// for MinRegistryBackoff after a failure, doubling up to MaxRegistryBackoff.
const (
	MinRegistryBackoff = 2 * time.Second
	MaxRegistryBackoff = 5 * time.Minute
)

// NewQueue returns a Queue healing with healer the roots that roots finds.
func NewQueue(healer *Healer, roots RootFinder, opts ...QueueOption) (*Queue, error) {
	q := &Queue{
		healer: healer, roots: roots, workers: DefaultWorkers, recheck: DefaultRecheckAfter, quiet: DefaultQuietPeriod, timeout: healTimeout,
		jobs:    make(chan queuedJob, DefaultQueueSize),
		pending: map[healJob]bool{}, recent: map[healJob]time.Time{}, down: map[string]registryStatus{}, seen: map[string]time.Time{},
	}
	for _, o := range opts {
		if err := o(q); err != nil {
			return nil, err
		}
	}
	q.slots = newSlots(q.workers, cap(q.jobs))
	q.slots.resume = make(chan struct{})
	return q, nil
}

// Enqueue asks for a heal of what holds d in registry/repo. It never blocks
// and reports whether a heal was queued; a request already queued or
// running is shared.
func (q *Queue) Enqueue(registry, repo string, d digest.Digest) bool {
	j := healJob{registry, repo, d}
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seen[j.registry+"/"+j.repo] = now
	switch {
	case q.pending[j]:
		return false
	case now.Before(q.recent[j]):
		q.metrics.drop("recent")
		return false
	case now.Before(q.down[registry].until):
		q.metrics.drop("backoff")
		return false
	}
	select {
	case q.jobs <- queuedJob{j, now}:
		q.pending[j] = true
		q.metrics.depth(len(q.jobs))
		return true
	default:
		q.metrics.drop("full")
		return false
	}
}

// Len returns the heals waiting or running.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Run heals queued requests until ctx is done, as many at once as there
// are workers. A heal that waits its turn among a fleet's holders
// (WithOwnership), or for another job's heal of the same root (a pull
// queues one job per blob), hands its worker back meanwhile.
func (q *Queue) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case q.slots.c <- struct{}{}:
		}
	wait:
		select {
		case <-ctx.Done():
			<-q.slots.c
			return nil
		case <-q.slots.resume:
			// A heal that waited its turn takes the slot this loop held
			// for the next job; the loop takes another.
			continue
		case j := <-q.jobs:
			q.metrics.depth(len(q.jobs))
			w := &worker{s: q.slots, held: true}
			wg.Go(func() {
				defer w.done()
				q.run(ctx, w, j)
			})
			break wait
		}
	}
}

// waitQuiet returns once j's repository has had no request for the quiet
// period, or ctx is done. It waits until ten quiet periods after j was
// queued at most, so a client polling the mirror cannot postpone a heal for
// ever.
func (q *Queue) waitQuiet(ctx context.Context, j queuedJob) {
	deadline := j.at.Add(10 * q.quiet)
	for {
		q.mu.Lock()
		wait := min(time.Until(q.seen[j.registry+"/"+j.repo].Add(q.quiet)), time.Until(deadline))
		q.mu.Unlock()
		if wait <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// run heals one job; sl is its worker's slot, handed back while the heal
// waits its turn or for another job's run of the same root.
func (q *Queue) run(ctx context.Context, sl slot, qj queuedJob) {
	q.waitQuiet(ctx, qj)
	j := qj.healJob
	if q.backingOff(j) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("registry", j.registry).WithField("repo", j.repo).WithField("digest", j.digest))
	err := q.heal(ctx, sl, j)
	now := time.Now()

	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.pending, j)
	if !slices.ContainsFunc(slices.Collect(maps.Keys(q.pending)), func(p healJob) bool { return p.registry == j.registry && p.repo == j.repo }) {
		delete(q.seen, j.registry+"/"+j.repo)
	}
	switch {
	case errors.Is(err, errBackingOff):
		q.metrics.drop("backoff")
	case errors.Is(err, errLocalStore):
		// containerd's store failing says nothing of the registry: no
		// backoff. A passing failure (containerd restarting) is asked
		// again at the next request.
		if !errdefs.IsUnavailable(err) {
			q.remember(j, now.Add(q.recheck))
		}
		log.G(ctx).WithError(err).Warn("heal failed: local content store")
	case errors.Is(err, errDenied):
		// The operator's deny list, not the registry: no backoff, and not
		// remembered, so a lifted entry heals at the next request (a
		// refusal asks the registry nothing).
		log.G(ctx).WithError(err).Info("heal refused")
	case errors.Is(err, errPartlyDenied):
		// The deny list kept nodes back: not remembered, so a lifted
		// entry heals at the next request.
		delete(q.down, j.registry)
		log.G(ctx).WithError(err).Info("heal partial")
	case err == nil || errors.Is(err, errNotHealable):
		delete(q.down, j.registry)
		q.remember(j, now.Add(q.recheck))
	case registry.IsTransient(err):
		st := q.down[j.registry]
		if st.backoff == nil {
			st.backoff = &backoff.ExponentialBackOff{
				InitialInterval: MinRegistryBackoff, Multiplier: 2, MaxInterval: MaxRegistryBackoff,
			}
			st.backoff.Reset()
		}
		delay := st.backoff.NextBackOff()
		st.until = now.Add(delay)
		q.down[j.registry] = st
		log.G(ctx).WithError(err).WithField("retry_after", delay).Warn("heal failed; registry backing off")
	default:
		q.remember(j, now.Add(q.recheck))
		log.G(ctx).WithError(err).Warn("heal failed")
	}
}

// backingOff drops j if its registry started failing while j waited.
func (q *Queue) backingOff(j healJob) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !time.Now().Before(q.down[j.registry].until) {
		return false
	}
	delete(q.pending, j)
	q.metrics.drop("backoff")
	return true
}

// remember records a finished job, pruning expired entries so the map stays
// as small as the set of recently requested digests.
func (q *Queue) remember(j healJob, until time.Time) {
	if len(q.recent) > 4096 {
		now := time.Now()
		for k, t := range q.recent {
			if now.After(t) {
				delete(q.recent, k)
			}
		}
	}
	q.recent[j] = until
}

// errLocalStore marks a failure of this node's content store, not the
// registry's.
var errLocalStore = errors.New("local content store")

// errBackingOff: a heal queued before its registry failed is not run
// while the registry backs off.
var errBackingOff = errors.New("registry backing off")

// errPartlyDenied marks a heal the deny list left partial.
var errPartlyDenied = errors.New("the deny list kept nodes back")

func (q *Queue) heal(ctx context.Context, sl slot, j healJob) error {
	q.mu.Lock()
	down := time.Now().Before(q.down[j.registry].until)
	q.mu.Unlock()
	if down {
		return errBackingOff
	}
	roots, err := q.roots.Roots(ctx, j.registry, j.repo, j.digest)
	if err != nil {
		return fmt.Errorf("find what holds %s: %w: %w", j.digest, errLocalStore, err)
	}
	var errs []error
	for _, root := range roots {
		start := time.Now()
		t := Target{Registry: j.registry, Repository: j.repo, Root: root}
		res, err := q.healer.share(ctx, t, sl, nil)
		q.metrics.heal(res, err, time.Since(start))
		if q.observe != nil {
			q.observe(t, res, err, time.Since(start))
		}
		if err != nil {
			if res != nil && res.Denied > 0 {
				err = fmt.Errorf("%w (%w)", err, errPartlyDenied)
			}
			errs = append(errs, err)
			continue
		}
		if res.Pushed+res.Mounted > 0 {
			log.G(ctx).WithField("root", root.Digest).WithField("pushed", res.Pushed).WithField("bytes", res.BytesPushed).
				WithField("retention_tags", res.RetentionTags).Info("healed registry")
		}
	}
	return errors.Join(errs...)
}
