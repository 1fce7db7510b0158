package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmend/regmend/internal/daemon"
)

// unit parses a systemd unit file into section -> key -> values (a key may
// repeat).
func unit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	var section string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a unit line: %q", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// TestSystemdUnit checks the unit for nodes without Kubernetes: it runs serve
// with the example config, which regmend accepts, and it is hardened: the
// whole file system read-only (hosts.toml is written at install, not by the
// service), no capabilities, no new privileges.
func TestSystemdUnit(t *testing.T) {
	dir := filepath.Join(repo(t), "deploy", "systemd")
	u := unit(t, filepath.Join(dir, "regmend.service"))
	svc := u["Service"]
	if got := svc["ExecStart"]; len(got) != 1 || got[0] != "/usr/local/bin/regmend -c /etc/regmend/config.toml serve" {
		t.Errorf("ExecStart %q", got)
	}
	for k, want := range map[string]string{
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
		"CapabilityBoundingSet": "", "PrivateDevices": "yes", "Restart": "always",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %q, want %q", k, got, want)
		}
	}
	if _, ok := svc["ReadWritePaths"]; ok {
		t.Error("the service is given a writable path; it writes nothing")
	}
	if after := u["Unit"]["After"]; len(after) == 0 || !strings.Contains(after[0], "containerd.service") {
		t.Errorf("After=%q, want containerd.service", after)
	}

	cfg, err := daemon.LoadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.MirrorTokenFile == "" || cfg.Listen != "127.0.0.1:5050" || len(cfg.Registries) == 0 {
		t.Errorf("example config %+v: want the mirror token, loopback, a registry", cfg)
	}

	// systemd's own check, where systemd is installed (it needs the binary
	// ExecStart names to exist, so a copy names a stand-in).
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit's syntax is not checked by systemd")
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, "regmend.service"))
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "regmend.service")
	stand, _ := exec.LookPath("true")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/regmend", stand)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
