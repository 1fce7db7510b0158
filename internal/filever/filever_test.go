package filever_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/regmend/regmend/internal/filever"
)

// A same-size rewrite whose modification time is put back is another
// version.
func TestSameSeesRewriteWithRestoredModTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("aaaa"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Stat(path); !filever.Same(before, again) {
		t.Fatal("an unchanged file is reported changed")
	}
	time.Sleep(10 * time.Millisecond) // let the change time move on a coarse clock
	if err := os.WriteFile(path, []byte("bbbb"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("setup: size %d→%d, mtime %v→%v; want both kept", before.Size(), after.Size(), before.ModTime(), after.ModTime())
	}
	if filever.Same(before, after) {
		t.Error("a same-size rewrite with its modification time restored is reported unchanged")
	}
}
