package heal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"

	"github.com/regmend/regmend/resolver/registry"
)

// ImageState is what a check found of one image at its registry.
type ImageState string

// Image states. An image with nodes both healable and absent everywhere is
// broken; its healable nodes are still listed, and a fix still pushes them.
const (
	// StateHealthy: the registry holds every node asked about.
	StateHealthy ImageState = "healthy"
	// StateHealable: the registry lacks nodes and this node holds them all.
	StateHealable ImageState = "healable"
	// StateBroken: the registry lacks nodes this node cannot push (absent
	// here too, unreadable, or above such a node).
	StateBroken ImageState = "broken"
	// StateUnreachable: the registry did not answer, or refused to.
	StateUnreachable ImageState = "unreachable"
)

// States lists the image states in report order.
var States = []ImageState{StateHealthy, StateHealable, StateBroken, StateUnreachable}

// ImageReport is one image of a check.
type ImageReport struct {
	// Image is the image's pull reference: registry/repository@digest.
	Image string `json:"image"`
	// Names are the caller's names for the image (image records, tags).
	// Check leaves them empty; callers that know names fill them in.
	Names  []string `json:"names,omitempty"`
	Target Target   `json:"target"`
	// State is the image's state at the end: after the fix, when one ran.
	State ImageState `json:"state"`
	// Found is the state the check found, before any fix.
	Found ImageState `json:"found"`
	// Missing are the nodes the registry lacks and this node can push.
	Missing      []NodeResult `json:"missing,omitempty"`
	MissingBytes int64        `json:"missingBytes"`
	// Unhealable are the nodes the registry lacks that cannot be pushed,
	// each with its reason.
	Unhealable []NodeResult `json:"unhealable,omitempty"`
	// Error says why an unreachable image could not be checked.
	Error string `json:"error,omitempty"`
	// Fix is what the fix did; nil when none ran for this image.
	Fix *FixReport `json:"fix,omitempty"`
}

// FixReport is what a check's fix did to one image.
type FixReport struct {
	// Pushed are the nodes uploaded or mounted (Status says which).
	Pushed        []NodeResult `json:"pushed,omitempty"`
	BytesPushed   int64        `json:"bytesPushed"`
	RetentionTags []string     `json:"retentionTags,omitempty"`
	// Left are the nodes the registry still lacks after the fix.
	Left []NodeResult `json:"left,omitempty"`
	// Error says why the fix failed, when it did (a partial heal of a
	// broken image is not a failure: Left lists what is absent everywhere).
	Error string `json:"error,omitempty"`
}

// CheckReport is the outcome of a check: one ImageReport per target, in
// the order the targets were given.
type CheckReport struct {
	Images []ImageReport `json:"images"`
	// Counts are the images by final state, every state present; the map
	// Metrics.Sweep takes.
	Counts   map[string]int `json:"counts"`
	Deep     bool           `json:"deep"`
	Fix      bool           `json:"fix"`
	Duration time.Duration  `json:"duration"`
}

// Healthy reports whether every image is healthy (after the fix, if any).
func (r *CheckReport) Healthy() bool { return r.Counts[string(StateHealthy)] == len(r.Images) }

// Damaged returns how many images are healable or broken at the end.
func (r *CheckReport) Damaged() int {
	return r.Counts[string(StateHealable)] + r.Counts[string(StateBroken)]
}

// Failed returns how many images could not be checked (unreachable) or
// whose fix failed.
func (r *CheckReport) Failed() int {
	n := r.Counts[string(StateUnreachable)]
	for _, img := range r.Images {
		if img.Fix != nil && img.Fix.Error != "" {
			n++
		}
	}
	return n
}

// CheckOption configures a Check.
type CheckOption func(*checkOptions) error

type checkOptions struct {
	fix        bool
	fixTimeout time.Duration
	images     int
	progress   func(done, total int, img *ImageReport)
}

// WithFix heals every image the check finds damaged with Heal (the
// Healer's retention applies), including the healable nodes of a broken
// image, and reports the state after the fix. The default only reports.
func WithFix(fix bool) CheckOption {
	return func(o *checkOptions) error { o.fix = fix; return nil }
}

// WithFixTimeout bounds each heal of a check's fix: one that has not ended
// after d is cancelled and reported as a failed fix, and the check goes on.
// The default (0) sets no bound.
func WithFixTimeout(d time.Duration) CheckOption {
	return func(o *checkOptions) error {
		if d < 0 {
			return fmt.Errorf("fix timeout %s: must not be negative: %w", d, errdefs.ErrInvalidArgument)
		}
		o.fixTimeout = d
		return nil
	}
}

// DefaultImageConcurrency is how many images a check asks about at once.
const DefaultImageConcurrency = 4

// WithImageConcurrency bounds how many images are checked at once; the
// requests of each are bounded by the Healer's WithConcurrency. The default
// is DefaultImageConcurrency.
func WithImageConcurrency(n int) CheckOption {
	return func(o *checkOptions) error {
		if n < 1 {
			return fmt.Errorf("image concurrency %d: must be at least 1: %w", n, errdefs.ErrInvalidArgument)
		}
		o.images = n
		return nil
	}
}

// WithProgress calls fn after each image is checked (and fixed), one call
// at a time, with how many of total are done. The default is no callback.
func WithProgress(fn func(done, total int, img *ImageReport)) CheckOption {
	return func(o *checkOptions) error { o.progress = fn; return nil }
}

// Check plans every target with Plan, concurrently across images, and
// classifies each as healthy, healable, broken or unreachable; with
// WithFix it heals the damaged ones. It is what `regmend check` runs and
// what the daemon's periodic sweep calls, so both judge images alike. The
// Healer's WithDeepCheck decides whether blobs of the manifests a registry
// holds are asked about too.
//
// A registry that fails or refuses to answer makes its images unreachable;
// once one is found down at the transport level, its other images are not
// asked again. Any other failure (the local content store, hosts.toml, a
// registry outside the Remote's allow-list) stops the check and is
// returned, naming the image. Callers deduplicate targets.
func (h *Healer) Check(ctx context.Context, targets []Target, opts ...CheckOption) (*CheckReport, error) {
	o := checkOptions{images: DefaultImageConcurrency}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	rep := &CheckReport{Images: make([]ImageReport, len(targets)), Deep: h.deep, Fix: o.fix}
	var (
		down = &downRegistries{err: map[string]error{}}
		mu   sync.Mutex
		done int
	)
	g, gctx := errgroup.WithContext(ctx)
	sl := newSlots(o.images, maxWaitingChecks) // a fix waiting its turn hands its slot back (worker.go)
	for i, t := range targets {
		select {
		case sl.c <- struct{}{}:
		case <-gctx.Done():
		}
		if gctx.Err() != nil {
			break
		}
		w := &worker{s: sl, held: true}
		g.Go(func() error {
			defer w.done()
			img, err := h.checkOne(gctx, w, t, o, down)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Images[i] = img
			if done++; o.progress != nil {
				o.progress(done, len(targets), &rep.Images[i])
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Counts = map[string]int{}
	for _, s := range States {
		rep.Counts[string(s)] = 0
	}
	for _, img := range rep.Images {
		rep.Counts[string(img.State)]++
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// checkOne checks, and with o.fix heals, one image; sl is its image slot,
// handed back while the heal waits its turn or for another caller's run.
func (h *Healer) checkOne(ctx context.Context, sl slot, t Target, o checkOptions, down *downRegistries) (ImageReport, error) {
	img := ImageReport{Image: t.String(), Target: t}
	if err := down.get(t.Registry); err != nil {
		img.unreachable(fmt.Errorf("not asked: registry %s did not answer for another image: %w", t.Registry, err))
		return img, nil
	}
	plan, err := h.Plan(ctx, t)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return img, ctx.Err()
	case !registry.IsRegistrySide(err):
		return img, fmt.Errorf("check %s: %w", t, err)
	default:
		down.mark(t.Registry, err)
		img.unreachable(err)
		return img, nil
	}
	img.judge(plan)
	if !o.fix || len(img.Missing) == 0 {
		return img, nil
	}
	hctx := ctx
	if o.fixTimeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, o.fixTimeout)
		defer cancel()
	}
	// The heal takes this plan as its first round: each node is asked once.
	res, err := h.share(hctx, t, sl, plan)
	if ctx.Err() != nil {
		return img, ctx.Err()
	}
	img.fixed(res, err)
	return img, nil
}

func (img *ImageReport) unreachable(err error) {
	img.State, img.Found, img.Error = StateUnreachable, StateUnreachable, err.Error()
}

// judge classifies a plan: broken wins over healable.
func (img *ImageReport) judge(p *Plan) {
	for _, n := range p.Nodes() {
		switch n.Status {
		case StatusMissing:
			img.Missing = append(img.Missing, n)
			img.MissingBytes += n.Size
		case StatusUnhealable, StatusDenied:
			img.Unhealable = append(img.Unhealable, n)
		}
	}
	switch {
	case len(img.Unhealable) > 0:
		img.State = StateBroken
	case len(img.Missing) > 0:
		img.State = StateHealable
	default:
		img.State = StateHealthy
	}
	img.Found = img.State
}

// fixed records a heal. A heal that failed leaves the state as found.
func (img *ImageReport) fixed(res *Result, err error) {
	f := &FixReport{}
	img.Fix = f
	if err != nil && !errors.Is(err, errNotHealable) {
		f.Error = err.Error()
	}
	if res == nil {
		return
	}
	f.BytesPushed, f.RetentionTags = res.BytesPushed, res.RetentionTags
	for _, n := range res.Nodes {
		switch n.Status {
		case StatusPushed, StatusMounted:
			f.Pushed = append(f.Pushed, n)
		case StatusMissing, StatusUnhealable, StatusDenied:
			f.Left = append(f.Left, n)
		}
	}
	switch {
	case f.Error != "":
	case len(f.Left) == 0:
		img.State = StateHealthy
	default:
		img.State = StateBroken
	}
}

// downRegistries remembers, for one check, the registries that could not
// be reached at all, so their other images do not each wait out retries.
type downRegistries struct {
	mu  sync.Mutex
	err map[string]error
}

func (d *downRegistries) get(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err[name]
}

// mark records registry as down when err is a transport failure (refused,
// timed out, TLS); an error status may concern one repository only.
func (d *downRegistries) mark(name string, err error) {
	ue, ok := registry.IsUnreachable(err)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err[name] == nil {
		d.err[name] = ue
	}
}
