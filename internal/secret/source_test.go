package secret

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
		tok, err := src.Token(ctx)
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
