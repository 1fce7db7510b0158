package secret

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

const goodToken = "0123456789abcdef0123456789abcdef"

func writeToken(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

func TestReadFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "token")

	writeToken(t, p, goodToken+"\n", 0o600)
	f, err := ReadFile(ctx, p)
	if err != nil || f.Token.Reveal() != goodToken || f.Exposed() || f.Created {
		t.Fatalf("ReadFile = %+v, %v", f, err)
	}

	writeToken(t, p, goodToken, 0o644)
	if f, err := ReadFile(ctx, p); err != nil || !f.Exposed() {
		t.Errorf("a world-readable token file: %+v, %v; want it read and reported exposed", f, err)
	}

	for _, mode := range []os.FileMode{0o620, 0o602, 0o666} {
		writeToken(t, p, goodToken, mode)
		if _, err := ReadFile(ctx, p); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "writable") {
			t.Errorf("mode %04o: err = %v, want a refusal", mode, err)
		}
	}

	writeToken(t, p, "\n", 0o600)
	if _, err := ReadFile(ctx, p); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), p) {
		t.Errorf("empty file: err = %v, want invalid argument naming the file", err)
	}
	writeToken(t, p, strings.Repeat("a", maxFileSize+1), 0o600)
	if _, err := ReadFile(ctx, p); !errdefs.IsInvalidArgument(err) {
		t.Errorf("huge file: err = %v, want invalid argument", err)
	}
	if _, err := ReadFile(ctx, filepath.Join(dir, "absent")); !errdefs.IsNotFound(err) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want not found", err)
	}
	if _, err := ReadFile(ctx, dir); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("directory: err = %v, want failed precondition", err)
	}

	// A symlink is followed, as Kubernetes Secret volumes need.
	writeToken(t, p, goodToken, 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if f, err := ReadFile(ctx, link); err != nil || f.Token.Reveal() != goodToken {
		t.Errorf("through a symlink: %v", err)
	}
}

func TestEnsureFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "etc", "regmend", "mirror-token")

	f, err := EnsureFile(ctx, p)
	if err != nil || !f.Created || len(f.Token.Reveal()) != 64 {
		t.Fatalf("EnsureFile on no file = %+v, %v", f, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("created file: %v, %v; want mode 0600", st.Mode(), err)
	}
	if st, _ := os.Stat(filepath.Dir(p)); st.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode %v, want 0700", st.Mode().Perm())
	}
	again, err := EnsureFile(ctx, p)
	if err != nil || again.Created || again.Token.Reveal() != f.Token.Reveal() {
		t.Errorf("second EnsureFile replaced or re-created the token: %+v, %v", again, err)
	}
	names, _ := os.ReadDir(filepath.Dir(p))
	if len(names) != 1 {
		t.Errorf("left temporary files: %v", names)
	}

	// Never overwrites: an existing bad file is an error, not replaced.
	writeToken(t, p, "short", 0o600)
	if _, err := EnsureFile(ctx, p); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad existing file: err = %v, want invalid argument", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "short" {
		t.Errorf("bad existing file was overwritten")
	}
}

// TestEnsureFileConcurrent: processes racing to create the same file all end
// with the one token that won.
func TestEnsureFileConcurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	var wg sync.WaitGroup
	toks := make([]string, 8)
	for i := range toks {
		wg.Go(func() {
			f, err := EnsureFile(context.Background(), p)
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = f.Token.Reveal()
		})
	}
	wg.Wait()
	for _, tok := range toks {
		if tok != toks[0] {
			t.Fatalf("racing EnsureFile calls saw different tokens")
		}
	}
}
