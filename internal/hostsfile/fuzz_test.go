package hostsfile

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzEnsure feeds arbitrary existing hosts.toml content to Ensure. Ensure
// must either refuse and leave the directory exactly as it was, or write a
// file that containerd's config package loads with the mirror as the last
// [host] entry behind the registry; a second run must then change nothing.
func FuzzEnsure(f *testing.F) {
	for _, seed := range []string{
		"", "\n", "# only a comment", serverOnly, tlsFile, rightFile, wrongPlaceFile,
		"server = \"https://edge:5000\"\r\n[host.\"http://127.0.0.1:5050\"]\r\n",
		"[host.\"http://127.0.0.1:5050\".header]\nA = \"b\"\n[host.\"https://edge:5000\"]\n",
		"[host.\"https://a\"]\n[host.\"http://127.0.0.1:5050\"]\n[host.\"https://a\".header]\nX = \"y\"\n",
		"[host]\n\"https://a\" = {capabilities = [\"pull\"]}\n",
		"server = \"edge:5000/sub\"\noverride_path = true\n[[host]]\n",
		"x = \"\"\"\n# x\"\"\"\n# c\n[host.\"http://127.0.0.1:5050\"]\ncapabilities = [\"push\"]",
		"[host.\"https://edge:5000\"]\n  capabilities = [\"Resolve\", \"PULL\"]\n[host.\"http://127.0.0.1:5050\"]\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, content string) {
		dir := t.TempDir()
		p := writeHosts(t, dir, testRegistry, content, 0o640)
		res, err := Ensure(context.Background(), dir, testRegistry, testMirror)
		if err != nil {
			if got := readFile(t, p); got != content {
				t.Fatalf("refused (%v) but changed the file to:\n%s", err, got)
			}
			if names := dirNames(t, filepath.Dir(p)); !slices.Equal(names, []string{"hosts.toml"}) {
				t.Fatalf("refused (%v) but left %q", err, names)
			}
			if names := dirNames(t, dir); len(names) != 1 {
				t.Fatalf("refused (%v) but left %q in the hosts dir", err, names)
			}
			return
		}
		hosts := containerdHosts(t, dir, testRegistry)
		if prob := orderProblem(hosts, "127.0.0.1:5050"); prob != "" {
			t.Fatalf("%s\ninput:\n%s\noutput:\n%s\nhosts: %q", prob, content, readFile(t, p), describe(hosts))
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
			t.Fatalf("mode %v", st.Mode().Perm())
		}
		if res.Action == Updated && readFile(t, res.Backup) != content {
			t.Fatal("backup differs from the old content")
		}
		again, err := Ensure(context.Background(), dir, testRegistry, testMirror)
		if err != nil || again.Action != Unchanged {
			t.Fatalf("second run: %v %v\n%s", again.Action, err, readFile(t, p))
		}
	})
}

// FuzzInstallThenRemove: for any file Ensure accepts that has no regmend
// entry yet, Ensure with a token, a rotation, then Remove give back the
// original bytes exactly (or, for a file Ensure created, no file); any other
// file still loses regmend's entry and stays loadable.
func FuzzInstallThenRemove(f *testing.F) {
	for _, o := range originals {
		if !o.certs {
			f.Add(o.content)
		}
	}
	f.Add(wrongPlaceFile)
	f.Add("[host.\"https://a\"]\n[host.\"https://a\".header]\nX = \"y\"\n# tail\n")
	f.Fuzz(func(t *testing.T, content string) {
		dir := t.TempDir()
		p := writeHosts(t, dir, testRegistry, content, 0o644)
		ctx := context.Background()
		if _, err := Ensure(ctx, dir, testRegistry, testMirror, WithMirrorToken(testHeader, token1)); err != nil {
			return
		}
		if _, err := Ensure(ctx, dir, testRegistry, testMirror, WithMirrorToken(testHeader, token2)); err != nil {
			t.Fatalf("rotation: %v\n%s", err, readFile(t, p))
		}
		res, err := Remove(ctx, dir, testRegistry, testMirror)
		if err != nil {
			t.Fatalf("remove: %v\n%s", err, readFile(t, p))
		}
		if res.Action == Removed {
			return
		}
		got := readFile(t, p)
		if strings.Contains(got, token2) {
			t.Fatalf("the token is still there:\n%s", got)
		}
		// Text that is regmend's own could not have been told apart.
		if strings.Contains(content, "5050") || strings.Contains(content, "The registry itself") || strings.Contains(content, "written by regmend") {
			return
		}
		if got != content {
			t.Fatalf("install then remove:\n%q\nwant:\n%q", got, content)
		}
	})
}
