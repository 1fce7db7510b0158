package hostsfile

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Hand-written tokens as hosts.toml must escape them, and one with unicode
// (WithMirrorToken takes any header value; secret.Parse only ASCII).
const (
	tokenQuote   = `quote"and\backslash-0123456789abcdef0123456789`
	tokenUnicode = `tök\"ën-ünïcödé-✓-0123456789abcdef0123456789`
)

// tokenForms are the ways a token can be written in hosts.toml text.
func tokenForms(tok string) []string {
	q := quote(tok)
	return []string{tok, q[1 : len(q)-1]}
}

// filesHolding lists the files under dir whose bytes hold tok in any form.
func filesHolding(t *testing.T, dir, tok string) []string {
	t.Helper()
	var holders []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, f := range tokenForms(tok) {
			if strings.Contains(string(b), f) {
				holders = append(holders, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return holders
}

// TestRemoveFindsEntryByMarker: an entry Ensure wrote for a mirror on
// another port than the default is found by its marker when Remove is given
// no mirror address, and the file comes back byte for byte.
func TestRemoveFindsEntryByMarker(t *testing.T) {
	ctx := context.Background()
	for _, orig := range []string{serverOnly, tlsFile} {
		dir := t.TempDir()
		p := writeHosts(t, dir, testRegistry, orig, 0o644)
		writeCert(t, filepath.Join(filepath.Dir(p), "ca.pem"), "")
		writeCert(t, filepath.Join(filepath.Dir(p), "client.cert"), filepath.Join(filepath.Dir(p), "client.key"))
		if _, err := Ensure(ctx, dir, testRegistry, "http://127.0.0.1:5051", WithMirrorToken(testHeader, token1)); err != nil {
			t.Fatal(err)
		}
		res, err := Remove(ctx, dir, testRegistry, "")
		if err != nil {
			t.Fatalf("Remove without a mirror address: %v", err)
		}
		if got := readFile(t, p); res.Action != Updated || got != orig {
			t.Errorf("%s; got:\n%s\nwant the original:\n%s", res.Action, got, orig)
		}
		// Given another address, the marked entry goes too.
		Ensure(ctx, dir, testRegistry, "http://127.0.0.1:5051")
		if res, err := Remove(ctx, dir, testRegistry, testMirror); err != nil || readFile(t, p) != orig {
			t.Errorf("Remove at %s of an entry at :5051: %s, %v; want the original back", testMirror, res.Action, err)
		}
	}
}

// TestRemoveRestoresMode: a 0644 file that Ensure made 0600 for the token is
// 0644 again after Remove.
func TestRemoveRestoresMode(t *testing.T) {
	for _, perm := range []os.FileMode{0o644, 0o640} {
		dir := t.TempDir()
		p := writeHosts(t, dir, testRegistry, serverOnly, perm)
		os.Chmod(p, perm) // WriteFile's mode passes through the umask
		ensureToken(t, dir, token1)
		ensureToken(t, dir, token2) // a rotation keeps the record
		if mode(t, p) != 0o600 {
			t.Fatalf("mode %04o with the token, want 0600", mode(t, p))
		}
		removeFile(t, dir)
		if mode(t, p) != perm || readFile(t, p) != serverOnly {
			t.Errorf("after remove: mode %04o, want %04o as before install; content:\n%s", mode(t, p), perm, readFile(t, p))
		}
	}
}

// TestNoTokenLeftAfterRemove: after install, rotation (tokens that TOML
// must escape) and remove, no file under the hosts directory holds any of
// the tokens, in any form.
func TestNoTokenLeftAfterRemove(t *testing.T) {
	for _, orig := range []string{serverOnly, ""} {
		dir := t.TempDir()
		if orig != "" {
			writeHosts(t, dir, testRegistry, orig, 0o644)
		}
		toks := []string{token1, tokenQuote, tokenUnicode}
		for _, tok := range toks {
			ensureToken(t, dir, tok)
			if got := sentToken(t, dir); len(got) != 1 || got[0] != tok {
				t.Fatalf("containerd would send %q, want %q", got, tok)
			}
		}
		removeFile(t, dir)
		for _, tok := range toks {
			if h := filesHolding(t, dir, tok); len(h) > 0 {
				t.Errorf("original %q: after remove, %q still hold a token", orig, h)
			}
		}
	}
}

// TestOneBackupAcrossCycles: install and uninstall cycles leave exactly one
// backup, the user's file as it was before regmend, without a token.
func TestOneBackupAcrossCycles(t *testing.T) {
	dir := t.TempDir()
	p := writeHosts(t, dir, testRegistry, tlsFile, 0o644)
	writeCert(t, filepath.Join(filepath.Dir(p), "ca.pem"), "")
	writeCert(t, filepath.Join(filepath.Dir(p), "client.cert"), filepath.Join(filepath.Dir(p), "client.key"))
	for _, tok := range []string{token1, token2, tokenQuote} {
		ensureToken(t, dir, tok)
		removeFile(t, dir)
	}
	names, err := backups(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || readFile(t, names[0]) != tlsFile {
		t.Fatalf("backups %q, want one, the original file", names)
	}
	if mode(t, names[0]) != 0o644&^umask(t) {
		t.Errorf("backup mode %04o, want the original file's", mode(t, names[0]))
	}
}

// TestRemoveBacksUpWhatTheUserAdded: when the user added to regmend's
// entry, Remove keeps a backup with that addition, and without the token.
func TestRemoveBacksUpWhatTheUserAdded(t *testing.T) {
	dir := t.TempDir()
	p := writeHosts(t, dir, testRegistry, serverOnly, 0o644)
	ensureToken(t, dir, tokenQuote)
	installed := readFile(t, p)
	added := strings.Replace(installed, "  capabilities = [\"pull\", \"resolve\"]\n", "  capabilities = [\"pull\", \"resolve\"]\n  dial_timeout = \"7s\"\n", 1)
	if added == installed {
		t.Fatalf("no mirror capabilities line in:\n%s", installed)
	}
	os.WriteFile(p, []byte(added), 0o600)
	res := removeFile(t, dir)
	if res.Backup == "" {
		t.Fatal("no backup of an entry the user added to")
	}
	b := readFile(t, res.Backup)
	if !strings.Contains(b, "dial_timeout = \"7s\"") || !strings.Contains(b, backupPlaceholder) || len(filesHolding(t, dir, tokenQuote)) > 0 {
		t.Errorf("backup:\n%s\nwant the user's addition, and the token replaced by %q", b, backupPlaceholder)
	}
}

// TestRemoveScrubsOldBackups: a backup from an older regmend that holds the
// token loses it (and nothing else) on Remove; a backup without one is left
// as it is.
func TestRemoveScrubsOldBackups(t *testing.T) {
	dir := t.TempDir()
	p := writeHosts(t, dir, testRegistry, serverOnly, 0o644)
	withToken := ensureToken(t, dir, token1).Content
	old := p + ".bak.20260101T000000Z"
	os.WriteFile(old, withToken, 0o600)
	user := p + ".bak.20250101T000000Z"
	os.WriteFile(user, []byte(tlsFile), 0o644)

	res := removeFile(t, dir)
	if h := filesHolding(t, dir, token1); len(h) > 0 {
		t.Fatalf("%q still hold the token; notes %q", h, res.Notes)
	}
	want := strings.Replace(string(withToken), token1, backupPlaceholder, 1)
	if got := readFile(t, old); got != want || mode(t, old) != 0o600 {
		t.Errorf("scrubbed backup (mode %04o):\n%s\nwant:\n%s", mode(t, old), got, want)
	}
	if readFile(t, user) != tlsFile {
		t.Error("a backup without a token was changed")
	}
	// With no hosts.toml left at all, still.
	os.WriteFile(old, withToken, 0o600)
	os.Remove(p)
	removeFile(t, dir)
	if h := filesHolding(t, dir, token1); len(h) > 0 {
		t.Errorf("without hosts.toml, %q still hold the token", h)
	}
}

// TestRedact: the token is replaced in every form hosts.toml may hold it,
// and the result still parses the same otherwise.
func TestRedact(t *testing.T) {
	const ph = "<token>"
	for _, tok := range []string{token1, tokenQuote, tokenUnicode} {
		dir := t.TempDir()
		res, err := Ensure(context.Background(), dir, testRegistry, testMirror, WithMirrorToken(testHeader, tok), WithDryRun())
		if err != nil {
			t.Fatal(err)
		}
		// Other forms a hand-edited file may use: a literal string, unicode
		// escapes, a comment.
		esc := ""
		for _, r := range tok {
			esc += fmt.Sprintf(`\U%08X`, r)
		}
		text := string(res.Content) + "# old: " + tok + "\n[host.\"https://x.example\".header]\n  A = '" + strings.ReplaceAll(tok, "'", "") + "'\n  B = \"" + esc + "\"\n"
		out := Redact([]byte(text), tok, ph)
		for _, f := range tokenForms(tok) {
			if strings.Contains(string(out), f) {
				t.Errorf("token %q: redacted text still holds %q:\n%s", tok, f, out)
			}
		}
		if strings.Contains(string(out), esc) {
			t.Errorf("token %q: the \\U-escaped form is still there:\n%s", tok, out)
		}
		if !strings.Contains(string(out), `"X-Regmend-Token" = ["<token>"]`) {
			t.Errorf("the header does not read the placeholder:\n%s", out)
		}
		if _, err := scan(out); err != nil {
			t.Errorf("redacted text does not parse: %v\n%s", err, out)
		}
	}
}

func umask(t *testing.T) os.FileMode {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, nil, 0o777); err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ mode(t, p)
}
