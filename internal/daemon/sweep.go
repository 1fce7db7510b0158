package daemon

import (
	"context"
	"math/rand/v2"
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
		d.SweepOnce(ctx)
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

// SweepOnce checks every image of the configured registries and heals what
// it can, recording the result in metrics.
func (d *Daemon) SweepOnce(ctx context.Context) *heal.CheckReport {
	images, err := content.ImageTargets(ctx, d.stores.Images, d.cfg.Registries)
	if err != nil {
		log.G(ctx).WithError(err).Warn("sweep: cannot list images")
		return nil
	}
	ts := make([]heal.Target, len(images))
	for i, img := range images {
		ts[i] = heal.TargetOf(img)
	}
	rep, err := d.healer.Check(ctx, ts, heal.WithFix(true))
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
