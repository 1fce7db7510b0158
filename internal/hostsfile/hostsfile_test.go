package hostsfile

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const serverOnly = "server = \"https://edge:5000\"\n"

// tlsFile sets TLS options, headers and comments that must survive.
const tlsFile = `# edge registry, managed by hand
server = "https://edge:5000"
ca = "ca.pem"            # relative to this directory
client = [["client.cert", "client.key"]]
skip_verify = false
dial_timeout = "3s"

[header]
  X-Team = "infra"
  X-Multi = ["a", "b"]

[host."https://cache.example:443"]   # a pull-through cache tried first
  capabilities = ["pull", "resolve"]
  ca = "ca.pem"
  override_path = true
`

const rightFile = `server = "https://edge:5000"

[host."https://edge:5000"]
  capabilities = ["pull", "resolve", "push"]

# regmend
[host."http://127.0.0.1:5050"]
  capabilities = ["pull", "resolve"]
`

const wrongPlaceFile = `server = "https://edge:5000"

# regmend, added by hand in the wrong place
[host."http://127.0.0.1:5050"]
  capabilities = ["pull", "resolve"]
[host."http://127.0.0.1:5050".header]
  X-From = "node"

[host."https://cache.example"]
  capabilities = ["pull", "resolve"]
`

func TestEnsure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		registry string
		existing *string
		mode     os.FileMode
		setup    func(t *testing.T, regDir string)
		opts     []Option
		want     Action
		check    func(t *testing.T, before, after string, res Result)
	}{{
		name: "new file", want: Created,
		check: func(t *testing.T, _, after string, res Result) {
			for _, s := range []string{`server = "https://edge:5000"`, `[host."https://edge:5000"]`,
				`capabilities = ["pull", "resolve", "push"]`, "404", `[host."http://127.0.0.1:5050"]`} {
				if !strings.Contains(after, s) {
					t.Errorf("missing %q", s)
				}
			}
			if strings.Index(after, `[host."https://edge:5000"]`) > strings.Index(after, `[host."http://127.0.0.1:5050"]`) {
				t.Error("registry entry must come first")
			}
		},
	}, {
		name: "new file, plain-http registry", want: Created, opts: []Option{WithServerScheme("http")},
		check: contains(`server = "http://edge:5000"`, `[host."http://edge:5000"]`),
	}, {
		name: "new file, docker.io", registry: "docker.io", want: Created,
		check: contains(`server = "https://registry-1.docker.io"`, `[host."https://registry-1.docker.io"]`),
	}, {
		name: "new file, localhost keeps containerd's TLS default", registry: "localhost:5000", want: Created,
		check: contains(`server = "http://localhost:5000"`, "skip_verify = true"),
	}, {
		name: "new file, Docker-style certificates in the directory", want: Created,
		setup: func(t *testing.T, regDir string) {
			writeCert(t, filepath.Join(regDir, "ca.crt"), "")
			writeCert(t, filepath.Join(regDir, "client.cert"), filepath.Join(regDir, "client.key"))
		},
		check: contains(`ca = ["ca.crt"]`, `client = [["client.cert", "client.key"]]`),
	}, {
		name: "server only", existing: ptr(serverOnly), mode: 0o600, want: Updated,
		check: func(t *testing.T, before, after string, _ Result) {
			if !strings.HasPrefix(after, before) {
				t.Error("existing content not kept")
			}
		},
	}, {
		name: "TLS, headers and comments kept byte for byte", existing: ptr(tlsFile), want: Updated,
		setup: func(t *testing.T, regDir string) {
			writeCert(t, filepath.Join(regDir, "ca.pem"), "")
			writeCert(t, filepath.Join(regDir, "client.cert"), filepath.Join(regDir, "client.key"))
		},
		check: func(t *testing.T, before, after string, res Result) {
			if !strings.HasPrefix(after, before) {
				t.Errorf("existing content not kept:\n%s", after)
			}
			// The added registry entry reaches the registry the way server did.
			contains(`ca = "ca.pem"`, `client = [["client.cert", "client.key"]]`, "skip_verify = false",
				`dial_timeout = "3s"`, `[host."https://edge:5000".header]`, `"X-Multi" = ["a", "b"]`)(t, before, after, res)
			if !strings.HasPrefix(res.Hosts[0], "https://cache.example:443") {
				t.Errorf("the other mirror must stay first: %q", res.Hosts)
			}
		},
	}, {
		name: "another mirror listed before keeps its place", want: Updated,
		existing: ptr("[host.\"https://cache.example\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
		check: func(t *testing.T, before, after string, res Result) {
			if !strings.HasPrefix(after, before) || !strings.HasPrefix(res.Hosts[0], "https://cache.example/v2") {
				t.Errorf("other mirror moved: %q", res.Hosts)
			}
		},
	}, {
		name: "regmend already in place", existing: ptr(rightFile), want: Unchanged,
	}, {
		name: "regmend in the wrong place is moved last", existing: ptr(wrongPlaceFile), want: Updated,
		check: func(t *testing.T, _, after string, _ Result) {
			want := "# regmend, added by hand in the wrong place\n[host.\"http://127.0.0.1:5050\"]\n" +
				"  capabilities = [\"pull\", \"resolve\"]\n[host.\"http://127.0.0.1:5050\".header]\n  X-From = \"node\"\n"
			if !strings.HasSuffix(after, want) {
				t.Errorf("regmend's sections not moved intact to the end:\n%s", after)
			}
			if strings.Count(after, "127.0.0.1:5050\"]") != 1 {
				t.Errorf("regmend listed twice:\n%s", after)
			}
		},
	}, {
		name: "regmend with wrong capabilities is fixed", want: Updated,
		existing: ptr(rightFile[:len(rightFile)-len("  capabilities = [\"pull\", \"resolve\"]\n")] +
			"  capabilities = [\n    \"pull\", \"resolve\", \"push\",\n  ]  # too many\n"),
		check: contains("  capabilities = [\"pull\", \"resolve\"]  # too many\n"),
	}, {
		name: "regmend without capabilities gets them", want: Updated,
		existing: ptr(serverOnly + "[host.\"http://127.0.0.1:5050\"]\n  skip_verify = true\n"),
		check:    contains("[host.\"http://127.0.0.1:5050\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"),
	}, {
		name: "regmend only as a sub-table", want: Updated,
		existing: ptr("[host.\"http://127.0.0.1:5050\".header]\n  A = \"b\"\n[host.\"https://edge:5000\"]\n"),
		check:    contains("[host.\"http://127.0.0.1:5050\"]\n  capabilities = [\"pull\", \"resolve\"]\n[host.\"http://127.0.0.1:5050\".header]\n"),
	}, {
		name: "CRLF file", existing: ptr("server = \"https://edge:5000\"\r\n"), want: Updated,
		check: func(t *testing.T, _, after string, _ Result) {
			if strings.Count(after, "\n") != strings.Count(after, "\r\n") {
				t.Errorf("mixed line endings: %q", after)
			}
		},
	}, {
		name: "empty file", existing: ptr(""), want: Updated,
	}, {
		name: "host_port_ directory is the one containerd reads", want: Created,
		setup: func(t *testing.T, regDir string) {
			if err := os.Mkdir(filepath.Join(filepath.Dir(regDir), "edge_5000_"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, _, _ string, res Result) {
			if filepath.Base(filepath.Dir(res.Path)) != "edge_5000_" {
				t.Errorf("wrote %s", res.Path)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := tc.registry
			if reg == "" {
				reg = testRegistry
			}
			regDir := filepath.Join(dir, reg)
			before, past := "", time.Now().Add(-time.Hour).Truncate(time.Second)
			if tc.existing != nil {
				before = *tc.existing
				mode := tc.mode
				if mode == 0 {
					mode = 0o644
				}
				p := writeHosts(t, dir, reg, before, mode)
				if err := os.Chtimes(p, past, past); err != nil {
					t.Fatal(err)
				}
			} else if err := os.MkdirAll(regDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, regDir)
			}
			res, err := Ensure(context.Background(), dir, reg, testMirror, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != tc.want {
				t.Fatalf("action %s, want %s", res.Action, tc.want)
			}
			after := readFile(t, res.Path)
			if after != string(res.Content) {
				t.Error("Result.Content differs from the file")
			}
			assertOrder(t, dir, reg)
			st, err := os.Stat(res.Path)
			if err != nil {
				t.Fatal(err)
			}
			switch tc.want {
			case Unchanged:
				if !st.ModTime().Equal(past) || after != before || res.Backup != "" {
					t.Error("unchanged file was written")
				}
			case Updated:
				if res.Backup == "" || readFile(t, res.Backup) != before {
					t.Errorf("backup %q missing or wrong", res.Backup)
				}
				if want := cmp.Or(tc.mode, 0o644); st.Mode().Perm() != want {
					t.Errorf("mode %v, want %v", st.Mode().Perm(), want)
				}
			}
			for _, name := range dirNames(t, filepath.Dir(res.Path)) {
				if strings.HasPrefix(name, ".") {
					t.Errorf("left %s behind", name)
				}
			}
			if tc.check != nil {
				tc.check(t, before, after, res)
			}
			again, err := Ensure(context.Background(), dir, reg, testMirror, tc.opts...)
			if err != nil || again.Action != Unchanged {
				t.Errorf("second run: %v, %v", again.Action, err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func contains(subs ...string) func(*testing.T, string, string, Result) {
	return func(t *testing.T, _, after string, _ Result) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(after, s) {
				t.Errorf("missing %q in:\n%s", s, after)
			}
		}
	}
}
