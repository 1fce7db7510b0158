package daemon

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
	"github.com/regmend/regmend/resolver/peers"
)

// denyHooks is the deny list (deny_file) as each part of the daemon obeys
// it, each counting its refusals under its own where. nil: no deny file.
type denyHooks struct {
	watcher *deny.Watcher
	metrics *deny.Metrics
	events  *nodeEvents // set by Run before any server or worker starts; nil: off
}

// newDeny reads cfg.DenyFile; a missing or bad file at start is an error
// (regmend does not start without the operator's list). nil when unset.
func newDeny(ctx context.Context, cfg Config, reg prometheus.Registerer) (*denyHooks, error) {
	if cfg.DenyFile == "" {
		return nil, nil
	}
	m := deny.NewMetrics(reg)
	w, err := deny.NewWatcher(ctx, cfg.DenyFile, deny.WithMetrics(m))
	if err != nil {
		return nil, fmt.Errorf("deny_file: %w", err)
	}
	return &denyHooks{watcher: w, metrics: m}, nil
}

func (d *denyHooks) denier(where string) deny.Denier {
	return eventing{next: d.metrics.Counting(where, d.watcher), hooks: d}
}

// eventing posts a Denied event on the Node for each refusal; client-go's
// recorder folds repeats of one digest and entry into one event.
type eventing struct {
	next  deny.Denier
	hooks *denyHooks
}

func (e eventing) Denied(registry, repo string, dg digest.Digest) (string, bool) {
	entry, denied := e.next.Denied(registry, repo, dg)
	if denied {
		e.hooks.events.Denied(registry+"/"+repo+"@"+dg.String(), entry)
	}
	return entry, denied
}

func (d *denyHooks) healerOptions() []heal.HealerOption {
	if d == nil {
		return nil
	}
	return []heal.HealerOption{heal.WithDeny(d.denier(deny.WhereHeal))}
}

// mirrorOptions is for the containerd-facing mirror (deny.WhereMirror) or
// the peer endpoint's (deny.WherePeer).
func (d *denyHooks) mirrorOptions(where string) []mirror.Option {
	if d == nil {
		return nil
	}
	return []mirror.Option{mirror.WithDeny(d.denier(where))}
}

func (d *denyHooks) clientOptions() []peers.ClientOption {
	if d == nil {
		return nil
	}
	return []peers.ClientOption{peers.WithClientDeny(d.denier(deny.WherePeer))}
}

// run follows the deny file until ctx is done.
func (d *denyHooks) run(ctx context.Context) error {
	if d == nil {
		return nil
	}
	return d.watcher.Run(ctx)
}
