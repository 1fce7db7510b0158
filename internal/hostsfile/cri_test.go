package hostsfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const (
	v3Table = `[plugins."io.containerd.cri.v1.images".registry]`
	v2Table = `[plugins."io.containerd.grpc.v1.cri".registry]`
	v1Table = `[plugins.cri.registry]`
)

func TestCheckCRIConfigPath(t *testing.T) {
	for _, tc := range []struct {
		name      string
		config    string // "" → no file
		imports   map[string]string
		hostsDir  string
		want      FindingKind
		wantTable string // in Fix
		wantMsg   string
	}{
		{name: "missing file", want: ConfigFileMissing, wantTable: v2Table, wantMsg: "does not exist"},
		{name: "v3 set", config: "version = 3\n" + v3Table + "\n  config_path = \"/etc/containerd/certs.d\"\n",
			hostsDir: "/etc/containerd/certs.d/", want: ConfigPathOK},
		{name: "v4 set, no hosts dir given", config: "version = 4\n" + v3Table + "\n  config_path = \"/x\"\n", want: ConfigPathOK},
		{name: "v3 other dir", config: "version = 3\n" + v3Table + "\n  config_path = \"/etc/containerd/certs.d\"\n",
			hostsDir: "/var/lib/regmend/hosts", want: ConfigPathOtherDir, wantTable: v3Table, wantMsg: "/var/lib/regmend/hosts"},
		{name: "v3 unset", config: "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\n  max_concurrent_downloads = 3\n",
			want: ConfigPathUnset, wantTable: v3Table, wantMsg: "silently ignored"},
		{name: "v3 colon list", config: "version = 3\n" + v3Table + "\n  config_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n",
			want: ConfigPathList, wantTable: v3Table, wantMsg: "colon-separated"},
		{name: "v3 with the v2 key only", config: "version = 3\n" + v2Table + "\n  config_path = \"/etc/containerd/certs.d\"\n",
			want: ConfigPathUnset, wantTable: v3Table, wantMsg: "is ignored for this config version"},
		{name: "v3 explicitly empty", config: "version = 3\n" + v3Table + "\n  config_path = \"\"\n", want: ConfigPathUnset, wantTable: v3Table},
		{name: "v2 set", config: "version = 2\n" + v2Table + "\n  config_path = \"/etc/containerd/certs.d\"\n",
			hostsDir: "/etc/containerd/certs.d", want: ConfigPathOK},
		{name: "v2 unset", config: "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"\n",
			want: ConfigPathUnset, wantTable: v2Table, wantMsg: "1.6/1.7"},
		{name: "v2 colon list", config: "version = 2\n" + v2Table + "\n  config_path = \"/a:/b\"\n", want: ConfigPathList, wantTable: v2Table},
		{name: "v1 set", config: v1Table + "\n  config_path = \"/etc/containerd/certs.d\"\n", want: ConfigPathOK},
		{name: "v1 unset", config: "root = \"/var/lib/containerd\"\n", want: ConfigPathUnset, wantTable: v1Table},
		{name: "set in an import", config: "version = 3\nimports = [\"conf.d/*.toml\"]\n",
			imports:  map[string]string{"conf.d/10-registry.toml": "version = 3\n" + v3Table + "\n  config_path = \"/h\"\n"},
			hostsDir: "/h", want: ConfigPathOK},
		{name: "import overrides", config: "version = 3\nimports = [\"/IMPORT/late.toml\"]\n" + v3Table + "\n  config_path = \"/a:/b\"\n",
			imports: map[string]string{"late.toml": "version = 3\n" + v3Table + "\n  config_path = \"/h\"\n"},
			want:    ConfigPathOK},
		{name: "v2 import into v3", config: "version = 3\nimports = [\"old.toml\"]\n",
			imports: map[string]string{"old.toml": "version = 2\n" + v2Table + "\n  config_path = \"/h:/i\"\n"},
			want:    ConfigPathList, wantTable: v2Table, wantMsg: "old.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "config.toml")
			if tc.config != "" {
				writeFile(t, p, strings.ReplaceAll(tc.config, "/IMPORT", dir))
			}
			for name, content := range tc.imports {
				writeFile(t, filepath.Join(dir, name), content)
			}
			f, err := CheckCRIConfigPath(p, tc.hostsDir)
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != tc.want || f.OK() != (tc.want == ConfigPathOK) || f.ConfigFile != p {
				t.Fatalf("got %+v, want kind %s", f, tc.want)
			}
			if f.Message == "" || !strings.Contains(f.Message, tc.wantMsg) {
				t.Errorf("message %q should say %q", f.Message, tc.wantMsg)
			}
			if f.OK() {
				if f.Fix != "" || f.SetIn == "" {
					t.Errorf("OK finding: %+v", f)
				}
				return
			}
			dirWant := tc.hostsDir
			if dirWant == "" {
				dirWant = DefaultHostsDir
			}
			if want := tc.wantTable + "\n  config_path = \"" + dirWant + "\"\n"; !strings.HasSuffix(f.Fix, want) {
				t.Errorf("fix %q, want %q", f.Fix, want)
			}
			if !strings.Contains(f.Message, f.Fix) {
				t.Errorf("message does not show the fix: %q", f.Message)
			}
			// Applying the fix where it says makes the finding go away.
			old, _ := os.ReadFile(f.FixIn)
			if !strings.Contains(string(old), tc.wantTable) {
				writeFile(t, f.FixIn, string(old)+"\n"+f.Fix)
				if f2, err := CheckCRIConfigPath(p, tc.hostsDir); err != nil || !f2.OK() {
					t.Errorf("after the fix: %+v, %v", f2, err)
				}
			}
		})
	}
}

func TestCheckCRIConfigPathSymlinkedDir(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config.toml")
	writeFile(t, p, "version = 3\n"+v3Table+"\n  config_path = \""+filepath.Join(dir, "link")+"\"\n")
	if f, err := CheckCRIConfigPath(p, real); err != nil || !f.OK() {
		t.Fatalf("%+v, %v", f, err)
	}
}

func TestCheckCRIConfigPathErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.toml")
	writeFile(t, p, "version = 3\n[plugins\n")
	if _, err := CheckCRIConfigPath(p, ""); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), p) {
		t.Errorf("unparsable config: %v", err)
	}
	writeFile(t, p, "version = 3\nimports = [\"missing.toml\"]\n")
	if _, err := CheckCRIConfigPath(p, ""); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing import: %v", err)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
