package main

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A hand-written token that TOML writes escaped: \" and \\.
const escToken = `quote"and\backslash-0123456789abcdef0123456789`

func runAppOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := app()
	cmd.Writer, cmd.ErrWriter = &out, io.Discard
	err := cmd.Run(context.Background(), append([]string{"regmend"}, args...))
	return out.String(), err
}

// holding lists the files under dir that hold tok, raw or TOML-escaped.
func holding(t *testing.T, dir, tok string) []string {
	t.Helper()
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(tok)
	var found []string
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(tok)) || bytes.Contains(b, []byte(esc)) {
				found = append(found, p)
			}
		}
		return err
	})
	return found
}

func writeToken(t *testing.T, path, tok string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The README's recovery line, `regmend hosts --remove edge:5000` without
// --mirror, takes out an entry at a port other than the default, and the
// file gets back its bytes and its mode.
func TestHostsRemoveWithoutMirror(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "edge:5000", "hosts.toml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	const orig = "server = \"https://edge:5000\"\n"
	os.WriteFile(p, []byte(orig), 0o644)
	os.Chmod(p, 0o644)
	tok := filepath.Join(t.TempDir(), "mirror-token")
	flags := []string{"--hosts-dir", dir, "hosts", "--containerd-config", filepath.Join(dir, "none.toml")}
	if err := runApp(t, append(flags, "edge:5000", "--mirror", "http://127.0.0.1:5051", "--mirror-token-file", tok)...); err != nil {
		t.Fatalf("hosts: %v", err)
	}
	out, err := runAppOut(t, append(flags, "--remove", "edge:5000")...)
	if err != nil {
		t.Fatalf("hosts --remove: %v", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != orig {
		t.Errorf("hosts --remove edge:5000 said:\n%s\nfile:\n%s\nwant the original", out, got)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode after remove: %v (%v), want 0644 as before install", st.Mode().Perm(), err)
	}
}

// Uninstall with the token file named deletes it, and leaves the token in no
// file of the hosts dir; --keep-mirror-token keeps it, and so does a
// registry whose entry still holds it.
func TestHostsRemoveDeletesTokenFile(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(t.TempDir(), "mirror-token")
	writeToken(t, tok, escToken)
	flags := []string{"--hosts-dir", dir, "hosts", "--containerd-config", filepath.Join(dir, "none.toml"), "--mirror-token-file", tok}
	p := filepath.Join(dir, "edge:5000", "hosts.toml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("server = \"https://edge:5000\"\n"), 0o644)
	if err := runApp(t, append(flags, "edge:5000", "other:5000")...); err != nil {
		t.Fatalf("hosts: %v", err)
	}
	for _, c := range []struct {
		args   []string
		kept   bool
		reason string
	}{
		{[]string{"other:5000"}, true, "edge:5000's entry still holds the token"},
		{[]string{"edge:5000", "--keep-mirror-token"}, true, "--keep-mirror-token"},
		{[]string{"edge:5000"}, false, ""},
	} {
		out, err := runAppOut(t, append(append(flags, "--remove"), c.args...)...)
		if err != nil {
			t.Fatalf("hosts --remove %q: %v", c.args, err)
		}
		if _, err := os.Stat(tok); (err == nil) != c.kept {
			t.Fatalf("hosts --remove %q: token file stat %v, want kept=%v (%s)\n%s", c.args, err, c.kept, c.reason, out)
		}
	}
	if h := holding(t, dir, escToken); len(h) > 0 {
		t.Errorf("after uninstall, %q hold the token", h)
	}
	// Idempotent: a second run finds nothing to do and succeeds.
	if err := runApp(t, append(append(flags, "--remove"), "edge:5000", "other:5000")...); err != nil {
		t.Errorf("second hosts --remove: %v", err)
	}
}

// --dry-run never prints the token, though the file holds it TOML-escaped.
func TestHostsDryRunNeverPrintsToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(t.TempDir(), "mirror-token")
	writeToken(t, tok, escToken)
	flags := []string{"--hosts-dir", dir, "hosts", "edge:5000", "--containerd-config", filepath.Join(dir, "none.toml"), "--mirror-token-file", tok}
	for _, extra := range [][]string{{"--dry-run"}, nil, {"--dry-run"}, {"--dry-run", "--remove"}} {
		out, err := runAppOut(t, append(flags, extra...)...)
		if err != nil {
			t.Fatalf("hosts %q: %v", extra, err)
		}
		esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(escToken)
		if strings.Contains(out, escToken) || strings.Contains(out, esc) {
			t.Errorf("hosts %q printed the token:\n%s", extra, out)
		}
		if extra != nil && !strings.Contains(out, "<mirror token from "+tok+">") && !slices.Contains(extra, "--remove") {
			t.Errorf("hosts %q: no placeholder in\n%s", extra, out)
		}
	}
	// --dry-run --remove says it would delete the token file, and does not.
	out, _ := runAppOut(t, append(flags, "--dry-run", "--remove")...)
	if _, err := os.Stat(tok); err != nil || !strings.Contains(out, "would delete the mirror token file") {
		t.Errorf("--dry-run --remove: token file %v, said:\n%s", err, out)
	}
}
