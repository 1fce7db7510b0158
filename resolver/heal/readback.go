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
// serves what the heal wrote: each manifest GETs back with its digest,
// each blob's first byte reads back. (The plan read the rest of the
// closure, so the whole closure has then been read.) A registry that
// accepted the writes and still does not serve the bytes fails the heal
// loudly, with an error registry.IsUnserved recognises, rather than leave
// a fresh node to hit a short read.
func (h *Healer) readBack(ctx context.Context, sess *registry.Session, plan *Plan, res *Result) error {
	var (
		mu       sync.Mutex
		unserved []error
		written  int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.concurrency)
	for _, n := range plan.Closure.Nodes() {
		if s := res.outcome[n.Digest]; s != StatusPushed && s != StatusMounted {
			continue
		}
		written++
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
		return fmt.Errorf("heal %s: reading back what it wrote: %w", plan.Target, err)
	}
	if len(unserved) > 0 {
		return fmt.Errorf("heal %s: the registry accepted %d writes and does not serve %d of them: %w",
			plan.Target, written, len(unserved), errors.Join(unserved...))
	}
	return nil
}

func confirmNode(ctx context.Context, sess *registry.Session, n *content.Node) error {
	if n.Kind.IsManifest() {
		return sess.ConfirmManifest(ctx, n.Descriptor)
	}
	return sess.ConfirmBlob(ctx, n.Descriptor)
}
