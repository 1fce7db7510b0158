package daemon

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestLoadFile(t *testing.T) {
	for _, c := range []struct {
		name, body, wantErr string
		check               func(t *testing.T, cfg Config)
	}{
		{name: "defaults fill what the file omits", body: `registries = ["edge:5000"]` + "\nsweep_interval = \"5m\"\n",
			check: func(t *testing.T, cfg Config) {
				if cfg.Listen != DefaultListen || time.Duration(cfg.SweepInterval) != 5*time.Minute || cfg.Registries[0] != "edge:5000" || cfg.Retain != "tag" {
					t.Errorf("cfg = %+v", cfg)
				}
			}},
		{name: "unknown key is named", body: "registry = [\"edge\"]\n", wantErr: "unknown setting registry"},
		{name: "bad duration is named", body: "sweep_interval = \"1 hour\"\n", wantErr: "sweep_interval"},
		{name: "wrong type is named", body: "workers = \"two\"\n", wantErr: "workers"},
		{name: "not toml", body: "registries = [\n", wantErr: "toml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.toml")
			os.WriteFile(p, []byte(c.body), 0o644)
			cfg, err := LoadFile(p)
			if c.wantErr != "" {
				if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("err = %v, want invalid argument naming %q and the file", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg)
		})
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "absent.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want not exist", err)
	}
}

func TestValidateNamesTheBadSetting(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"listen", func(c *Config) { c.Listen = "5050" }, "listen"},
		{"metrics", func(c *Config) { c.MetricsListen = "nope" }, "metrics_listen"},
		{"registry", func(c *Config) { c.Registries = []string{"https://edge"} }, "registries"},
		{"retain", func(c *Config) { c.Retain = "forever" }, "retain"},
		{"sweep", func(c *Config) { c.SweepInterval = -1 }, "sweep_interval"},
		{"workers", func(c *Config) { c.Workers = 0 }, "workers"},
		{"queue", func(c *Config) { c.QueueSize = 0 }, "queue_size"},
		{"namespace", func(c *Config) { c.Namespace = "" }, "namespace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			if err := cfg.Validate(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v, want invalid argument naming %s", err, c.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}
