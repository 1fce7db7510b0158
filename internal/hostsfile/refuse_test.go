package hostsfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestEnsureRefusesFile(t *testing.T) {
	for _, tc := range []struct {
		name, content, wantMsg string
	}{
		{"not TOML", serverOnly + "[host.\"https://edge:5000\"\n", "line 2"},
		{"duplicate table", "[host.\"https://a\"]\n[host.\"https://a\"]\n", "line 2"},
		{"wrong type", "server = 5\n", "cannot parse"},
		{"unknown capability", "[host.\"https://a\"]\n  capabilities = [\"fly\"]\n", "unknown capability"},
		{"missing CA file", serverOnly + "ca = \"/nonexistent/ca.pem\"\n", "/nonexistent/ca.pem"},
		{"registry entry without resolve", serverOnly + "[host.\"https://edge:5000\"]\n  capabilities = [\"push\"]\n", "pull and resolve"},
		{"mirror under two keys", "[host.\"http://127.0.0.1:5050\"]\n[host.\"http://127.0.0.1:5050/\"]\n", "several keys"},
		{"mirror under another scheme", "[host.\"https://127.0.0.1:5050\"]\n", "another scheme"},
		{"mirror as dotted keys", "[host]\n\"http://127.0.0.1:5050\".capabilities = [\"pull\"]\n", "fails containerd's check"},
		{"mirror is the server", "server = \"http://127.0.0.1:5050\"\n", "registry's own endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeHosts(t, dir, testRegistry, tc.content, 0o644)
			st, _ := os.Stat(p)
			_, err := Ensure(context.Background(), dir, testRegistry, testMirror)
			if err == nil {
				t.Fatalf("no error; file now:\n%s", readFile(t, p))
			}
			if !errdefs.IsFailedPrecondition(err) && !errdefs.IsInvalidArgument(err) {
				t.Errorf("error does not wrap FailedPrecondition/InvalidArgument: %v", err)
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q should name %s and say %q", err, p, tc.wantMsg)
			}
			st2, _ := os.Stat(p)
			if readFile(t, p) != tc.content || !st2.ModTime().Equal(st.ModTime()) {
				t.Error("file was touched")
			}
			if names := dirNames(t, filepath.Dir(p)); !slices.Equal(names, []string{"hosts.toml"}) {
				t.Errorf("directory now holds %q", names)
			}
			if names := dirNames(t, dir); len(names) != 1 {
				t.Errorf("hosts dir now holds %q", names)
			}
		})
	}
}

func TestEnsureRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	real := writeHosts(t, dir, "elsewhere", serverOnly, 0o644)
	if err := os.MkdirAll(filepath.Join(dir, testRegistry), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, testRegistry, "hosts.toml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(context.Background(), dir, testRegistry, testMirror)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), link) {
		t.Fatalf("got %v", err)
	}
	if readFile(t, real) != serverOnly {
		t.Error("link target changed")
	}
}

func TestEnsureBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, registry, mirror string
		opts                   []Option
	}{
		{"empty registry", "", testMirror, nil},
		{"registry with scheme", "https://edge:5000", testMirror, nil},
		{"registry with path", "edge:5000/team", testMirror, nil},
		{"registry with bad port", "edge:99999", testMirror, nil},
		{"registry with empty port", "edge:", testMirror, nil},
		{"registry with space", "ed ge", testMirror, nil},
		{"registry _default", "_default", testMirror, nil},
		{"registry dot-dot", "..", testMirror, nil},
		{"registry bad IPv6", "[::1", testMirror, nil},
		{"empty mirror", testRegistry, "", nil},
		{"mirror without scheme", testRegistry, "127.0.0.1:5050", nil},
		{"mirror ftp", testRegistry, "ftp://127.0.0.1:5050", nil},
		{"mirror without host", testRegistry, "http://", nil},
		{"mirror with path", testRegistry, "http://127.0.0.1:5050/v2", nil},
		{"mirror with user", testRegistry, "http://u:p@127.0.0.1:5050", nil},
		{"mirror with query", testRegistry, "http://127.0.0.1:5050?ns=x", nil},
		{"mirror bad port", testRegistry, "http://127.0.0.1:0", nil},
		{"mirror is the registry", testRegistry, "https://edge:5000/", nil},
		{"bad scheme option", testRegistry, testMirror, []Option{WithServerScheme("ftp")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Ensure(context.Background(), dir, tc.registry, tc.mirror, tc.opts...)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("want InvalidArgument, got %v", err)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("created %q", names)
			}
		})
	}
	if _, err := Ensure(context.Background(), "", testRegistry, testMirror); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty hosts dir: %v", err)
	}
}

func TestEnsureGoodInput(t *testing.T) {
	for _, c := range [][2]string{
		{"[::1]:5000", "http://[::1]:5050"}, {"registry.example.com", "https://regmend.local:8443/"},
		{"10.0.0.1", "http://127.0.0.1"},
	} {
		dir := t.TempDir()
		if _, err := Ensure(context.Background(), dir, c[0], c[1]); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
}

func TestEnsureDryRun(t *testing.T) {
	dir := t.TempDir()
	res, err := Ensure(context.Background(), dir, testRegistry, testMirror, WithDryRun())
	if err != nil || res.Action != Created || len(res.Content) == 0 || len(res.Hosts) != 3 {
		t.Fatalf("%+v, %v", res, err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("dry run created %q", names)
	}
	p := writeHosts(t, dir, testRegistry, serverOnly, 0o644)
	res, err = Ensure(context.Background(), dir, testRegistry, testMirror, WithDryRun())
	if err != nil || res.Action != Updated || res.Backup != "" || readFile(t, p) != serverOnly {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestEnsureCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := Ensure(ctx, dir, testRegistry, testMirror); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
