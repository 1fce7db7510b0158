package heal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/registry"
)

// readBack confirms, after a heal on evidence of loss, that the registry
// serves the closure a fresh node will pull: each manifest GETs back with
// its digest, each blob's first byte reads back (but for those the plan
// read already). A registry that accepted
// the heal and still does not serve the bytes fails the heal loudly (an
// error registry.IsUnserved recognises), rather than leaving a node to hit
// a short read. Nodes left unhealable are not asked: the result lists them.
func (h *Healer) readBack(ctx context.Context, sess *registry.Session, plan *Plan, res *Result) error {
	var (
		mu       sync.Mutex
		unserved []error
		asked    int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.concurrency)
	for _, n := range plan.Closure.Nodes() {
		switch s := res.status(plan, n.Digest); {
		case s == StatusSkipped || s == StatusMissing || s == StatusUnhealable:
			continue
		case s == StatusPresent && plan.read[n.Digest]:
			continue // its first byte was read by the plan, moments ago
		}
		asked++
		g.Go(func() error {
			err := confirmNode(gctx, sess, n)
			if err == nil || !registry.IsUnserved(err) {
				return err
			}
			mu.Lock()
			unserved = append(unserved, err)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("heal %s: reading the closure back: %w", plan.Target, err)
	}
	if len(unserved) > 0 {
		return fmt.Errorf("heal %s: the registry accepted the heal but does not serve %d of %d nodes: %w",
			plan.Target, len(unserved), asked, errors.Join(unserved...))
	}
	return nil
}

func confirmNode(ctx context.Context, sess *registry.Session, n *content.Node) error {
	if n.Kind.IsManifest() {
		return sess.ConfirmManifest(ctx, n.Descriptor)
	}
	return sess.ConfirmBlob(ctx, n.Descriptor)
}
