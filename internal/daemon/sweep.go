package daemon

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/heal"
)

// A node that already holds a child manifest never pulls it again, so it
// never sees the 404 a fresh node will hit. The sweep finds such damage
// before anyone trips over it: every image of the configured registries is
// checked and healed, once at start, every SweepInterval (with jitter, so a
// fleet does not sweep in step), and shortly after new images appear.

// Each heal of a sweep ends after DefaultSweepHealTimeout at most (an
// upload that trickles, a hung registry that keeps the connection), and a
// sweep never waits for the one before it: one started while an earlier
// sweep still heals an image skips that image and checks the rest, so one
// stuck heal holds up nothing but itself.

// DefaultSweepHealTimeout bounds each heal of a sweep, retries and a wait
// for a peer's turn included, as the heal queue bounds its own.
const DefaultSweepHealTimeout = 10 * time.Minute

// sweeps is what runs of the sweep share: the images still being checked
// or healed by one.
type sweeps struct {
	mu          sync.Mutex
	inflight    map[string]bool
	healTimeout time.Duration // DefaultSweepHealTimeout when 0
}

// claim returns the targets no sweep is checking now, and marks them.
func (s *sweeps) claim(ts []heal.Target) []heal.Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight == nil {
		s.inflight = map[string]bool{}
	}
	var out []heal.Target
	for _, t := range ts {
		if k := t.String(); !s.inflight[k] {
			s.inflight[k] = true
			out = append(out, t)
		}
	}
	return out
}

func (s *sweeps) release(ts ...heal.Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		delete(s.inflight, t.String())
	}
}

// sweepDelayAfterEvent lets a burst of image events (CRI creates several
// records per pull) become one sweep.
const sweepDelayAfterEvent = 2 * time.Second

func (d *Daemon) sweep(ctx context.Context) error {
	interval := time.Duration(d.cfg.SweepInterval)
	if interval == 0 {
		<-ctx.Done()
		return nil
	}
	trigger := make(chan struct{}, 1)
	if d.stores.Events != nil {
		go d.watchImages(ctx, trigger)
	}
	timer := time.NewTimer(jitter(min(interval/10, 5*time.Second)))
	defer timer.Stop()
	var running sync.WaitGroup
	defer running.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-trigger:
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(sweepDelayAfterEvent):
			}
		}
		running.Go(func() { d.SweepOnce(ctx) })
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(interval - interval/10 + jitter(interval/5))
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// SweepOnce checks every image of the configured registries that no other
// sweep is checking now, and heals what it can, each heal bounded by
// DefaultSweepHealTimeout, recording the result in metrics.
func (d *Daemon) SweepOnce(ctx context.Context) *heal.CheckReport {
	images, err := content.ImageTargets(ctx, d.stores.Images, d.cfg.Registries)
	if err != nil {
		log.G(ctx).WithError(err).Warn("sweep: cannot list images")
		return nil
	}
	all := make([]heal.Target, len(images))
	for i, img := range images {
		all[i] = heal.TargetOf(img)
	}
	ts := d.sweeps.claim(all)
	defer d.sweeps.release(ts...)
	if skipped := len(all) - len(ts); skipped > 0 {
		log.G(ctx).WithField("images", skipped).Info("sweep: images an earlier sweep still checks or heals are left to it")
	}
	timeout := d.sweeps.healTimeout
	if timeout == 0 {
		timeout = DefaultSweepHealTimeout
	}
	rep, err := d.healer.Check(ctx, ts, heal.WithFix(true), heal.WithFixTimeout(timeout),
		heal.WithProgress(func(_, _ int, img *heal.ImageReport) {
			d.sweeps.release(img.Target)
			d.events.sweepHealed(img)
		}))
	if err != nil {
		log.G(ctx).WithError(err).Warn("sweep failed")
		return nil
	}
	d.metrics.Sweep(rep.Counts, time.Now())
	l := log.G(ctx).WithField("images", len(ts)).WithField("counts", rep.Counts).WithField("duration", rep.Duration)
	if rep.Healthy() {
		l.Debug("sweep: all images healthy")
	} else {
		l.Info("sweep done")
	}
	return rep
}

// watchImages signals trigger when an image record is created or updated,
// resubscribing if containerd restarts.
func (d *Daemon) watchImages(ctx context.Context, trigger chan<- struct{}) {
	filter := `namespace==` + d.cfg.Namespace + `,topic~="^/images/(create|update)$"`
	for ctx.Err() == nil {
		events, errs := d.stores.Events.Subscribe(ctx, filter)
	recv:
		for {
			select {
			case <-ctx.Done():
				return
			case <-events:
				select {
				case trigger <- struct{}{}:
				default:
				}
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					log.G(ctx).WithError(err).Debug("image events interrupted; resubscribing")
				}
				break recv
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}
