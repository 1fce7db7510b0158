package ctrconf_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/ctrconf"
)

// node lays testdata files out below a temporary root standing in for /:
// node path -> testdata file name.
func node(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for at, name := range files {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, at)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// want is what a finding must say: its setting, where, and a piece of
// its fix.
type want struct {
	setting, file string
	line          int
	fix           string
	why           string // a piece of Why, when the case is about it
}

const (
	k3sCerts  = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"
	rke2Certs = "/var/lib/rancher/rke2/agent/etc/containerd/certs.d"
)

func TestCheckNamesEachTrap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		opts  []ctrconf.Option
		want  []want
	}{{
		name:  "containerd 1.6, version 2: discard_unpacked_layers and a colon-separated config_path",
		files: map[string]string{"/etc/containerd/config.toml": "containerd-1.6-v2.toml"},
		want: []want{
			{setting: `config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"`, file: "/etc/containerd/config.toml", line: 21,
				fix: "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\""},
			{setting: "discard_unpacked_layers = true", file: "/etc/containerd/config.toml", line: 17,
				fix: "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  discard_unpacked_layers = false"},
		},
	}, {
		name: "containerd 1.7, version 2: discard_unpacked_layers in an imported file, as a dotted key",
		files: map[string]string{
			"/etc/containerd/config.toml":        "containerd-1.7-v2.toml",
			"/etc/containerd/conf.d/10-cri.toml": "containerd-1.7-cri.toml",
		},
		want: []want{{setting: "discard_unpacked_layers = true", file: "/etc/containerd/conf.d/10-cri.toml", line: 5,
			fix: "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  discard_unpacked_layers = false"}},
	}, {
		name:  "containerd 2.x, version 3: discard_unpacked_layers in the images plugin",
		files: map[string]string{"/etc/containerd/config.toml": "containerd-2-v3.toml"},
		want: []want{{setting: "discard_unpacked_layers = true", file: "/etc/containerd/config.toml", line: 11,
			fix: "[plugins.\"io.containerd.cri.v1.images\"]\n  discard_unpacked_layers = false"}},
	}, {
		name:  "containerd 2.x, version 3, set up for regmend",
		files: map[string]string{"/etc/containerd/config.toml": "containerd-2-v3-ok.toml"},
	}, {
		name:  "no config file",
		files: map[string]string{},
		want:  []want{{setting: "no config file", file: "/etc/containerd/config.toml", fix: "version = 2"}},
	}, {
		name:  "k3s without registries.yaml: regmend's entry in certs.d is lost at k3s's next start",
		files: map[string]string{"/var/lib/rancher/k3s/agent/etc/containerd/config.toml": "k3s-config.toml"},
		opts:  []ctrconf.Option{ctrconf.WithHostsDir(k3sCerts), ctrconf.WithRegistries("edge:5000")},
		want: []want{{setting: "k3s writes " + k3sCerts + " from /etc/rancher/k3s/registries.yaml", file: "/etc/rancher/k3s/registries.yaml",
			why: "/etc/rancher/k3s is not visible here",
			fix: "mirrors:\n  \"edge:5000\":\n    endpoint:\n      - \"https://edge:5000\"\n      - \"http://127.0.0.1:5050\"\n"}},
	}, {
		name: "k3s with regmend in registries.yaml after the registry",
		files: map[string]string{
			"/var/lib/rancher/k3s/agent/etc/containerd/config.toml": "k3s-config.toml",
			"/etc/rancher/k3s/registries.yaml":                      "k3s-registries-mirrored.yaml",
		},
		opts: []ctrconf.Option{ctrconf.WithHostsDir(k3sCerts), ctrconf.WithRegistries("edge:5000")},
	}, {
		name: "rke2, run with the default paths: its own config is judged, and registries.yaml lacks regmend",
		files: map[string]string{
			"/var/lib/rancher/rke2/agent/etc/containerd/config.toml": "rke2-config.toml",
			"/etc/rancher/rke2/registries.yaml":                      "rke2-registries-plain.yaml",
		},
		opts: []ctrconf.Option{ctrconf.WithRegistries("edge:5000"), ctrconf.WithMirror("http://127.0.0.1:6060")},
		want: []want{
			{setting: `config_path = "` + rke2Certs + `"`, file: "/var/lib/rancher/rke2/agent/etc/containerd/config.toml", line: 17,
				fix: `config_path = "/etc/containerd/certs.d"`},
			{setting: "rke2 writes " + rke2Certs + " from /etc/rancher/rke2/registries.yaml", file: "/etc/rancher/rke2/registries.yaml", line: 5,
				fix: "  \"edge:5000\":\n    endpoint:\n      - \"http://edge:5000\"\n      - \"http://127.0.0.1:6060\"\n"},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			root := node(t, tc.files)
			got, err := ctrconf.Check(t.Context(), append([]ctrconf.Option{ctrconf.WithRoot(root)}, tc.opts...)...)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d findings, want %d:\n%v", len(got), len(tc.want), got)
			}
			for _, g := range got {
				t.Logf("%s", g)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Setting != w.setting || g.File != w.file || g.Line != w.line || !strings.Contains(g.Fix, w.fix) {
					t.Errorf("finding %d:\n%s\nwant setting %q at %s:%d with fix containing\n%s", i, g, w.setting, w.file, w.line, w.fix)
				}
				if !strings.Contains(g.Why, w.why) {
					t.Errorf("finding %d: why %q, want it to say %q", i, g.Why, w.why)
				}
				if g.Why == "" || strings.Contains(g.String(), root) {
					t.Errorf("finding %d says no why, or names the test root:\n%s", i, g)
				}
			}
		})
	}
}

// A config file containerd could not parse is an error naming the file,
// not a finding.
func TestCheckRefusesUnparsableConfig(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte("version = 2\n[plugins\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ctrconf.Check(t.Context(), ctrconf.WithRoot(root))
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "config.toml") {
		t.Fatalf("err = %v, want a failed precondition naming config.toml", err)
	}
}
