package hostsfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// originals are realistic hosts.toml files a node may hold before regmend.
var originals = []struct {
	name, content string
	certs         bool // needs ca.pem and client.cert/key in the directory
}{
	{name: "server only", content: serverOnly},
	{name: "CA, client certificate, headers, another mirror and comments", content: tlsFile, certs: true},
	{name: "no server, a pull-through cache", content: "# cache first\n[host.\"https://cache.example\"]\n  capabilities = [\"pull\", \"resolve\"]\n"},
	{name: "registry entry of the user's own", content: "server = \"https://edge:5000\"\n\n[host.\"https://edge:5000\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  skip_verify = true\n"},
	{name: "CRLF", content: "server = \"https://edge:5000\"\r\n\r\n[host.\"https://mirror.example\"]\r\n  capabilities = [\"pull\", \"resolve\"]\r\n"},
	{name: "no final newline", content: "server = \"https://edge:5000\"\nskip_verify = true"},
	{name: "trailing blank lines", content: serverOnly + "\n\n"},
	{name: "top-level headers only", content: "[header]\n  Authorization = \"Basic Zm9vOmJhcg==\"\n"},
	{name: "comment only", content: "# nothing here yet\n"},
	{name: "empty", content: ""},
}

func removeFile(t *testing.T, dir string, opts ...Option) Result {
	t.Helper()
	res, err := Remove(context.Background(), dir, testRegistry, testMirror, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestInstallThenRemove: Ensure (with and without a token, and after a
// rotation) then Remove gives back the original bytes exactly; Remove again
// changes nothing.
func TestInstallThenRemove(t *testing.T) {
	for _, orig := range originals {
		for _, tokens := range [][]string{nil, {token1}, {token1, token2}} {
			t.Run(orig.name+"/"+strings.Repeat("token ", len(tokens)), func(t *testing.T) {
				dir := t.TempDir()
				p := writeHosts(t, dir, testRegistry, orig.content, 0o644)
				if orig.certs {
					writeCert(t, filepath.Join(filepath.Dir(p), "ca.pem"), "")
					writeCert(t, filepath.Join(filepath.Dir(p), "client.cert"), filepath.Join(filepath.Dir(p), "client.key"))
				}
				if _, err := Ensure(context.Background(), dir, testRegistry, testMirror); len(tokens) == 0 && err != nil {
					t.Fatal(err)
				}
				for _, tok := range tokens {
					ensureToken(t, dir, tok)
				}
				res := removeFile(t, dir)
				if got := readFile(t, p); res.Action != Updated || got != orig.content {
					t.Fatalf("%s; install then remove gave:\n%q\nwant the original:\n%q", res.Action, got, orig.content)
				}
				// One backup, of the original; Remove keeps none of what
				// only regmend wrote.
				if names, _ := backups(p); res.Backup != "" || len(names) != 1 || readFile(t, names[0]) != orig.content {
					t.Errorf("remove's backup %q, backups %q; want only the original's", res.Backup, names)
				}
				if h := filesHolding(t, dir, token1); len(h) > 0 {
					t.Errorf("%q hold the token", h)
				}
				for _, h := range res.Hosts {
					if strings.Contains(h, "127.0.0.1:5050") {
						t.Errorf("containerd still lists the mirror: %q", res.Hosts)
					}
				}
				if again := removeFile(t, dir); again.Action != Unchanged || again.Backup != "" {
					t.Errorf("second remove: %s, backup %q", again.Action, again.Backup)
				}
			})
		}
	}
}

// TestRemoveFileRegmendCreated: a file regmend created goes away entirely,
// leaving no backup (it held only regmend's text); a file regmend created
// and the user added to stays, without regmend's entry.
func TestRemoveFileRegmendCreated(t *testing.T) {
	for _, opts := range [][]Option{nil, {WithServerScheme("http")}, {WithMirrorToken(testHeader, token1)}} {
		dir := t.TempDir()
		regDir := filepath.Join(dir, testRegistry)
		os.MkdirAll(regDir, 0o755)
		writeCert(t, filepath.Join(regDir, "ca.crt"), "")
		created, err := Ensure(context.Background(), dir, testRegistry, testMirror, opts...)
		if err != nil || created.Action != Created {
			t.Fatal(created.Action, err)
		}
		res := removeFile(t, dir)
		if _, err := os.Stat(res.Path); res.Action != Removed || !os.IsNotExist(err) {
			t.Fatalf("%s, stat: %v; want the file removed", res.Action, err)
		}
		if names := dirNames(t, regDir); res.Backup != "" || len(names) != 1 {
			t.Errorf("backup %q, directory %q; want only ca.crt left", res.Backup, names)
		}
		if again := removeFile(t, dir); again.Action != Unchanged {
			t.Errorf("second remove: %s", again.Action)
		}
	}

	dir := t.TempDir()
	created, _ := Ensure(context.Background(), dir, testRegistry, testMirror)
	added := strings.Replace(string(created.Content), "\n\n", "\ndial_timeout = \"5s\"\n\n", 1)
	os.WriteFile(created.Path, []byte(added), 0o644)
	res := removeFile(t, dir)
	if res.Action != Updated || !strings.Contains(readFile(t, created.Path), "dial_timeout") || strings.Contains(readFile(t, created.Path), "5050") {
		t.Errorf("%s:\n%s", res.Action, readFile(t, created.Path))
	}
}

func TestRemoveKeepsWhatIsNotRegmends(t *testing.T) {
	dir := t.TempDir()
	p := writeHosts(t, dir, testRegistry, serverOnly, 0o644)
	ensureToken(t, dir, token1)

	// The user changed regmend's registry entry and added a host after
	// regmend's: both stay.
	installed := readFile(t, p)
	changed := strings.Replace(installed, "\"push\"]\n", "\"push\"]\n  dial_timeout = \"9s\"\n", 1)
	after := "\n[host.\"https://late.example\"]\n  capabilities = [\"pull\"]\n"
	os.WriteFile(p, []byte(changed+after), 0o600)
	res := removeFile(t, dir)
	got := readFile(t, p)
	if res.Action != Updated || strings.Contains(got, "5050") || strings.Contains(got, token1) ||
		!strings.Contains(got, "dial_timeout = \"9s\"") || !strings.HasSuffix(got, after) {
		t.Fatalf("%s:\n%s", res.Action, got)
	}
	if len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "kept [host.\"https://edge:5000\"]") {
		t.Errorf("notes %q, want one saying the changed registry entry was kept", res.Notes)
	}

	// No regmend entry, no file: nothing to do, nothing written.
	os.WriteFile(p, []byte(serverOnly), 0o644)
	if res := removeFile(t, dir); res.Action != Unchanged || res.Backup != "" || readFile(t, p) != serverOnly {
		t.Errorf("file without regmend: %s", res.Action)
	}
	if res := removeFile(t, t.TempDir()); res.Action != Unchanged {
		t.Errorf("no file: %s", res.Action)
	}
}

func TestRemoveRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bad := rightFile + "capabilities = \n"
	p := writeHosts(t, dir, testRegistry, bad, 0o644)
	if _, err := Remove(ctx, dir, testRegistry, testMirror); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), p) {
		t.Errorf("unparsable file: err = %v, want a refusal naming it", err)
	}
	if readFile(t, p) != bad || len(dirNames(t, filepath.Dir(p))) != 1 {
		t.Error("refused but changed the directory")
	}
	for _, args := range [][2]string{{"../etc", testMirror}, {testRegistry, "ftp://x"}} {
		if _, err := Remove(ctx, dir, args[0], args[1]); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Remove(%q, %q): err = %v, want invalid argument", args[0], args[1], err)
		}
	}

	// Dry run: the result, nothing written.
	os.WriteFile(p, []byte(serverOnly), 0o644)
	ensureToken(t, dir, token1)
	installed := readFile(t, p)
	res, err := Remove(ctx, dir, testRegistry, testMirror, WithDryRun())
	if err != nil || string(res.Content) != serverOnly || res.Backup != "" || readFile(t, p) != installed {
		t.Errorf("dry run: %v, %q, backup %q", err, res.Content, res.Backup)
	}
}
