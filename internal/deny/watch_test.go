package deny

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/imagetest"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// denies reports whether w's list in force denies edge:5000/app@dA.
func denies(w *Watcher) bool {
	_, ok := w.Denied("edge:5000", "app", dA)
	return ok
}

func TestWatcherFollowsTheFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "deny")

	if _, err := NewWatcher(ctx, p); !errdefs.IsNotFound(err) {
		t.Fatalf("a missing file at start: %v, want not found", err)
	}
	write(t, p, "# nothing yet\n")
	reg := prometheus.NewRegistry()
	w, err := NewWatcher(ctx, p, WithMetrics(NewMetrics(reg)))
	if err != nil {
		t.Fatal(err)
	}
	if denies(w) {
		t.Fatal("an empty list denies")
	}
	if changed, err := w.Reload(ctx); changed || err != nil {
		t.Errorf("Reload of an unchanged file = %v, %v", changed, err)
	}

	// An in-place rewrite.
	write(t, p, "edge:5000/app\n")
	if changed, err := w.Reload(ctx); !changed || err != nil || !denies(w) {
		t.Fatalf("after a rewrite: changed %v, err %v, denies %v", changed, err, denies(w))
	}

	// A bad line: refused whole, the last list stays.
	write(t, p, dB.String()+"\nedge:5000/app:v1\n")
	if changed, err := w.Reload(ctx); changed || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a bad file: changed %v, err %v; want it refused naming line 2", changed, err)
	}
	if !denies(w) {
		t.Error("a bad file lifted the list in force")
	}
	if _, ok := w.Denied("x.example", "y", dB); ok {
		t.Error("a bad file was half applied: its good line is in force")
	}
	if _, err := w.Reload(ctx); err != nil {
		t.Errorf("the same bad version again: %v, want it judged once", err)
	}

	// A rename over it: another file.
	tmp := filepath.Join(dir, "deny.new")
	write(t, tmp, "# lifted\n")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if changed, err := w.Reload(ctx); !changed || err != nil || denies(w) {
		t.Fatalf("after a rename: changed %v, err %v, denies %v", changed, err, denies(w))
	}

	// Removed: the last list stays, and a file that comes back is read.
	write(t, p, "edge:5000/app\n")
	w.Reload(ctx)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if changed, err := w.Reload(ctx); changed || err != nil || !denies(w) {
		t.Errorf("after removal: changed %v, err %v, denies %v; want the last list kept", changed, err, denies(w))
	}
	write(t, p, "# back, lifted\n")
	if changed, _ := w.Reload(ctx); !changed || denies(w) {
		t.Errorf("a file that came back was not read: changed %v, denies %v", changed, denies(w))
	}

	if got := imagetest.Metric(t, reg, "regmend_deny_reloads_total", "result", "refused"); got != 1 {
		t.Errorf("refused reloads = %v, want 1", got)
	}
	if got := imagetest.Metric(t, reg, "regmend_deny_entries"); got != 0 {
		t.Errorf("entries gauge = %v, want 0", got)
	}
}

// A ConfigMap volume: the file is a symlink through ..data, a symlink to a
// timestamped directory; an update writes a new directory and swaps ..data.
func TestWatcherConfigMapSwap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "deny"), content)
	}
	version("..2026_12_03_10_00_00.1", "edge:5000/app\n")
	if err := os.Symlink("..2026_12_03_10_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "deny")
	if err := os.Symlink("..data/deny", p); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(ctx, p, WithInterval(10*time.Millisecond))
	if err != nil || !denies(w) {
		t.Fatalf("NewWatcher through the symlinks: %v, denies %v", err, denies(w))
	}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()

	// kubelet's swap: same size and, often, the same mtime second; only the
	// file behind the symlinks changes.
	version("..2026_12_03_10_01_00.2", "edge:5000/ap2\n")
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..2026_12_03_10_01_00.2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "..2026_12_03_10_00_00.1"))
	deadline := time.Now().Add(5 * time.Second)
	for denies(w) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if denies(w) {
		t.Fatal("the ..data swap was not noticed in 5s")
	}
	if _, ok := w.Denied("edge:5000", "ap2", dA); !ok {
		t.Error("the new version is not in force")
	}
	cancel()
	<-done
}

func TestCounting(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	l, err := Parse("x", strings.NewReader("edge:5000/app\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := m.Counting(WhereMirror, l)
	d.Denied("edge:5000", "app", dA)
	d.Denied("edge:5000", "other", dA)
	if got := imagetest.Metric(t, reg, "regmend_denied_total", "where", WhereMirror); got != 1 {
		t.Errorf("denied{where=mirror} = %v, want 1 (one denial)", got)
	}
	if _, ok := m.Counting(WhereHeal, nil).Denied("edge:5000", "app", dA); ok {
		t.Error("counting a nil Denier denied")
	}
}

// A rewrite of the same size whose modification time is put back (by a
// tool that keeps it, or within one tick) is still seen: the change time
// moves.
func TestWatcherSeesRewriteWithRestoredModTime(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "deny")
	write(t, p, "edge:5000/app\n")
	w, err := NewWatcher(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // past a coarse clock's tick, so the change time moves
	write(t, p, "edge:5000/bpp\n")
	if err := os.Chtimes(p, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(p); after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("setup: the rewrite changed the size or the modification time")
	}
	if changed, err := w.Reload(ctx); !changed || err != nil || denies(w) {
		t.Fatalf("after a same-size rewrite with mtime restored: changed %v, err %v, still denies %v", changed, err, denies(w))
	}
}
