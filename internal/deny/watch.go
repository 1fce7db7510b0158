package deny

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/filever"
)

var _ Denier = (*Watcher)(nil)

// DefaultInterval is how often a Watcher looks at its file.
const DefaultInterval = time.Second

// Watcher follows a deny file, so that denying or lifting an entry needs no
// restart. Denied answers from the list in force, with no lock and no system
// call. Run looks at the file every interval and re-reads it when it is
// another file (a rename over it, a ConfigMap's ..data symlink swapped) or
// its size, modification or change time changed (an in-place rewrite;
// internal/filever).
//
// It keeps the last good list when the file turns bad (the error is logged
// once per version of the file, and counted) and when the file is removed
// (logged once): a half-written or deleted file must not silently lift
// every entry. It is safe for concurrent use.
type Watcher struct {
	path     string
	interval time.Duration
	metrics  *Metrics

	mu   sync.Mutex // one look at the file at a time
	list atomic.Pointer[List]
	seen fs.FileInfo // the version last read, good or bad
	gone bool        // the file was missing at the last look
}

// WatchOption configures a Watcher.
type WatchOption func(*Watcher)

// WithInterval sets how often Run looks at the file (DefaultInterval).
func WithInterval(d time.Duration) WatchOption {
	return func(w *Watcher) {
		if d > 0 {
			w.interval = d
		}
	}
}

// WithMetrics records reloads and the entries in force.
func WithMetrics(m *Metrics) WatchOption { return func(w *Watcher) { w.metrics = m } }

// NewWatcher reads the deny file at path and follows it once Run runs. A
// missing or bad file at start is an error (ReadFile's): regmend then does
// not start rather than start without the operator's list.
func NewWatcher(ctx context.Context, path string, opts ...WatchOption) (*Watcher, error) {
	w := &Watcher{path: path, interval: DefaultInterval}
	for _, o := range opts {
		o(w)
	}
	l, st, err := readFile(ctx, path)
	if err != nil {
		return nil, err
	}
	w.list.Store(l)
	w.seen = st
	w.metrics.loaded(l)
	log.G(ctx).WithField("file", path).WithField("entries", l.Len()).Info("deny list loaded")
	return w, nil
}

// Denied reports whether the list in force denies d in registry/repo.
func (w *Watcher) Denied(registry, repo string, d digest.Digest) (string, bool) {
	return w.list.Load().Denied(registry, repo, d)
}

// List returns the list in force.
func (w *Watcher) List() *List { return w.list.Load() }

// Path returns the file followed.
func (w *Watcher) Path() string { return w.path }

// Run looks at the file every interval until ctx is done; it returns nil.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Reload(ctx)
		}
	}
}

// Reload looks at the file now and, if it changed, re-reads it. It reports
// whether a new list is in force, and the error that kept the last one.
func (w *Watcher) Reload(ctx context.Context) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := log.G(ctx).WithField("file", w.path)
	st, err := os.Stat(w.path) // follows the symlinks a ConfigMap volume is made of
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !w.gone {
				l.WithField("entries", w.list.Load().Len()).Warn("deny file removed; the last list it held stays in force")
			}
			w.gone = true
			return false, nil
		}
		l.WithError(err).Warn("deny file cannot be looked at; the last list stays in force")
		return false, err
	}
	if w.gone {
		w.gone = false
		w.seen = nil // whatever appears is read, even if it looks like the old one
	}
	if filever.Same(w.seen, st) {
		return false, nil
	}
	list, read, err := readFile(ctx, w.path)
	if read != nil {
		w.seen = read
	}
	if err != nil {
		if read == nil {
			w.seen = st // do not log the same bad version every second
		}
		w.metrics.reload(false)
		l.WithError(err).Error("deny file refused; the last list stays in force")
		return false, err
	}
	w.list.Store(list)
	w.metrics.reload(true)
	w.metrics.loaded(list)
	l.WithField("entries", list.Len()).Info("deny list reloaded")
	return true, nil
}
