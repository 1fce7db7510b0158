package hostsfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const (
	testHeader = "X-Regmend-Token"
	token1     = "1111111111111111111111111111111111111111111111111111111111111111"
	token2     = "2222222222222222222222222222222222222222222222222222222222222222"
)

// sentToken returns the values containerd would send as testHeader to the
// mirror, loading the file with containerd's own code.
func sentToken(t *testing.T, dir string) []string {
	t.Helper()
	for _, h := range assertOrder(t, dir, testRegistry) {
		if h.Host == "127.0.0.1:5050" {
			for k, v := range h.Header {
				if strings.EqualFold(k, testHeader) {
					return v
				}
			}
		}
	}
	return nil
}

func ensureToken(t *testing.T, dir, token string) Result {
	t.Helper()
	res, err := Ensure(context.Background(), dir, testRegistry, testMirror, WithMirrorToken(testHeader, token))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestMirrorTokenNewFile(t *testing.T) {
	dir := t.TempDir()
	res := ensureToken(t, dir, token1)
	if res.Action != Created || mode(t, res.Path) != 0o600 {
		t.Fatalf("action %s, mode %v; want created with 0600", res.Action, mode(t, res.Path))
	}
	want := "[host.\"http://127.0.0.1:5050\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n" +
		"[host.\"http://127.0.0.1:5050\".header]\n  \"X-Regmend-Token\" = [\"" + token1 + "\"]\n"
	if !strings.HasSuffix(string(res.Content), want) {
		t.Errorf("new file does not end with the mirror and its token:\n%s", res.Content)
	}
	if got := sentToken(t, dir); len(got) != 1 || got[0] != token1 {
		t.Errorf("containerd would send %q", got)
	}
	for _, n := range res.Notes {
		if strings.Contains(n, token1) {
			t.Errorf("a note shows the token: %s", n)
		}
	}
}

// TestMirrorTokenRotation: a new token replaces the old value in place and
// nothing else in the file changes; the same token again changes nothing.
func TestMirrorTokenRotation(t *testing.T) {
	dir := t.TempDir()
	p := writeHosts(t, dir, testRegistry, tlsFile, 0o644)
	writeCert(t, filepath.Join(filepath.Dir(p), "ca.pem"), "")
	writeCert(t, filepath.Join(filepath.Dir(p), "client.cert"), filepath.Join(filepath.Dir(p), "client.key"))
	first := ensureToken(t, dir, token1)
	if first.Action != Updated || mode(t, p) != 0o600 || !strings.HasPrefix(string(first.Content), tlsFile) {
		t.Fatalf("first run: %s, mode %v:\n%s", first.Action, mode(t, p), first.Content)
	}
	if readFile(t, first.Backup) != tlsFile {
		t.Errorf("the backup is not the user's file")
	}
	second := ensureToken(t, dir, token2)
	if second.Action != Updated || string(second.Content) != strings.Replace(string(first.Content), token1, token2, 1) {
		t.Fatalf("rotation changed more than the token:\n%s", second.Content)
	}
	if second.Backup != "" { // only regmend's own value changed
		t.Errorf("rotation kept a backup %s", second.Backup)
	}
	if got := sentToken(t, dir); len(got) != 1 || got[0] != token2 {
		t.Errorf("containerd would send %q after rotation", got)
	}
	if again := ensureToken(t, dir, token2); again.Action != Unchanged {
		t.Errorf("same token again: %s", again.Action)
	}
	if res, err := Ensure(context.Background(), dir, testRegistry, testMirror); err != nil || res.Action != Unchanged {
		t.Errorf("without a token option the token is left alone: %v %v", res.Action, err)
	}
}

func TestMirrorTokenExistingEntry(t *testing.T) {
	line := "\"X-Regmend-Token\" = [\"" + token1 + "\"]"
	for _, tc := range []struct {
		name, existing string
		from, to       string // the new file is existing with from replaced by to
	}{
		{"regmend in place, no header table", rightFile, rightFile, rightFile + "\n[host.\"http://127.0.0.1:5050\".header]\n  " + line + "\n"},
		{"header table with other headers", rightFile + "[host.\"http://127.0.0.1:5050\".header]\n  X-From = \"node\"  # why\n",
			"  X-From = \"node\"  # why\n", "  X-From = \"node\"  # why\n  " + line + "\n"},
		{"header table without a final newline", rightFile + "[host.\"http://127.0.0.1:5050\".header]\n  X-From = \"node\"",
			"  X-From = \"node\"", "  X-From = \"node\"\n  " + line + "\n"},
		{"old token, other case, comment kept", rightFile + "[host.\"http://127.0.0.1:5050\".header]\n  x-regmend-token = \"old\" # rotate me\n",
			"x-regmend-token = \"old\"", line},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeHosts(t, dir, testRegistry, tc.existing, 0o600)
			res := ensureToken(t, dir, token1)
			if want := strings.Replace(tc.existing, tc.from, tc.to, 1); readFile(t, p) != want || res.Action != Updated {
				t.Errorf("%s; got:\n%s\nwant:\n%s", res.Action, readFile(t, p), want)
			}
			if got := sentToken(t, dir); len(got) != 1 || got[0] != token1 {
				t.Errorf("containerd would send %q", got)
			}
		})
	}
}

func TestMirrorTokenTightensMode(t *testing.T) {
	dir := t.TempDir()
	res := ensureToken(t, dir, token1)
	if err := os.Chmod(res.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	again := ensureToken(t, dir, token1)
	if again.Action != Updated || again.Backup != "" || mode(t, res.Path) != 0o600 || len(again.Notes) != 1 {
		t.Errorf("a readable file holding the token: %s, backup %q, mode %v, notes %q; want it chmod-ed to 0600 only",
			again.Action, again.Backup, mode(t, res.Path), again.Notes)
	}
}

func TestMirrorTokenRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	inline := rightFile[:len(rightFile)-1] + "\n  header = {X-From = \"node\"}\n"
	p := writeHosts(t, dir, testRegistry, inline, 0o600)
	_, err := Ensure(ctx, dir, testRegistry, testMirror, WithMirrorToken(testHeader, token1))
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "inline") || strings.Contains(err.Error(), token1) {
		t.Errorf("inline headers: err = %v, want a refusal that names them and not the token", err)
	}
	if readFile(t, p) != inline {
		t.Error("refused but changed the file")
	}
	for _, opt := range []Option{WithMirrorToken("", token1), WithMirrorToken(testHeader, ""), WithMirrorToken(testHeader, "a\nb")} {
		if _, err := Ensure(ctx, t.TempDir(), testRegistry, testMirror, opt); !errdefs.IsInvalidArgument(err) {
			t.Errorf("bad token option: err = %v, want invalid argument", err)
		}
	}
}
