package secret

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFileSourceFollowsRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	first := strings.Repeat("1", 64)
	writeToken(t, p, first, 0o600)
	f, err := ReadFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	src := NewFileSource(f)
	current := func() string {
		t.Helper()
		tok, err := src.Refresh(ctx) // what a guard does when a token does not match
		if err != nil {
			return "error: " + err.Error()
		}
		return tok.Reveal()
	}
	if got := current(); got != first {
		t.Fatalf("token %q, want the first", got)
	}

	// Renamed over it (what EnsureFile and editors that save atomically do).
	second := strings.Repeat("2", 64)
	tmp := filepath.Join(dir, "new")
	writeToken(t, tmp, second, 0o600)
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if got := current(); got != second {
		t.Errorf("after a rename over the file: %q, want the second token", got)
	}

	// Rewritten in place, same size: the modification time tells.
	third := strings.Repeat("3", 64)
	writeToken(t, p, third, 0o600)
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if got := current(); got != third {
		t.Errorf("after an in-place rewrite: %q, want the third token", got)
	}

	// Missing or unusable: fail closed, then recover.
	os.Remove(p)
	if got := current(); !strings.HasPrefix(got, "error:") {
		t.Errorf("with the file gone: %q, want an error", got)
	}
	writeToken(t, p, "short", 0o600)
	if got := current(); !strings.HasPrefix(got, "error:") || strings.Contains(got, "short") {
		t.Errorf("with a bad file: %q, want an error that does not show the content", got)
	}
	writeToken(t, p, first, 0o600)
	later = later.Add(time.Second)
	os.Chtimes(p, later, later)
	if got := current(); got != first {
		t.Errorf("after the file was fixed: %q", got)
	}
}

// TestFileSourceLooksAtTheFileAtMostOnceASecond: Token costs no stat while
// the last look at the file is fresher than the recheck interval (a
// second); after that, one.
func TestFileSourceLooksAtTheFileAtMostOnceASecond(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "token")
	writeToken(t, p, strings.Repeat("1", 64), 0o600)
	f, err := ReadFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	src := NewFileSource(f)
	src.recheck = time.Hour // however slow the machine, the last look stays fresh
	var stats atomic.Int32
	src.stat = func(name string) (os.FileInfo, error) { stats.Add(1); return os.Stat(name) }
	for range 100 {
		if tok, err := src.Token(ctx); err != nil || !tok.Matches(strings.Repeat("1", 64)) {
			t.Fatalf("Token = %v, %v", tok, err)
		}
	}
	if n := stats.Load(); n != 0 {
		t.Errorf("100 Token calls while the last look is fresh took %d stats, want 0", n)
	}
	src.recheck = time.Millisecond
	time.Sleep(2 * time.Millisecond) // the last look is now older than recheck
	src.Token(ctx)
	if n := stats.Load(); n != 1 {
		t.Errorf("Token after the recheck interval took %d stats, want 1", n)
	}
}

// A same-size rewrite whose modification time is put back is still seen:
// the change time moves.
func TestFileSourceSeesRewriteWithRestoredModTime(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "token")
	first, second := strings.Repeat("1", 64), strings.Repeat("2", 64)
	writeToken(t, p, first, 0o600)
	f, err := ReadFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	src := NewFileSource(f)
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // past a coarse clock's tick, so the change time moves
	writeToken(t, p, second, 0o600)
	if err := os.Chtimes(p, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	tok, err := src.Refresh(ctx)
	if err != nil || tok.Reveal() != second {
		t.Errorf("after a same-size rewrite with mtime restored: %v; want the second token", err)
	}
}
