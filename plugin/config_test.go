package plugin

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/daemon"
)

// TestSectionDecode goes through containerd's own config loading and
// per-plugin decode, then decodeSection: whatever the section holds,
// containerd's decode must succeed (an error there stops containerd), and
// a bad value must be the plugin's error, naming the setting.
func TestSectionDecode(t *testing.T) {
	custom := daemon.DefaultConfig()
	custom.Registries = []string{"edge:5000", "127.0.0.1:5001"}
	custom.Listen = "127.0.0.1:6000"
	custom.SweepInterval = daemon.Duration(time.Minute)
	custom.Workers = 4
	custom.MirrorTokenFile = "/etc/regmend/mirror-token"
	for _, tc := range []struct {
		name, section string
		want          daemon.Config
		wantErr       string
	}{
		{name: "absent", want: daemon.DefaultConfig()},
		{name: "empty", section: "[plugins.\"io.containerd.server.v1.regmend\"]\n", want: daemon.DefaultConfig()},
		{
			name: "settings",
			section: `[plugins."io.containerd.server.v1.regmend"]
  registries = ["edge:5000", "127.0.0.1:5001"]
  listen = "127.0.0.1:6000"
  sweep_interval = "1m"
  workers = 4
  mirror_token_file = "/etc/regmend/mirror-token"
`,
			want: custom,
		},
		{name: "bad duration", section: "[plugins.\"io.containerd.server.v1.regmend\"]\n  sweep_interval = \"1 hour\"\n", wantErr: "sweep_interval"},
		{name: "string for list", section: "[plugins.\"io.containerd.server.v1.regmend\"]\n  registries = \"edge:5000\"\n", wantErr: "registries"},
		{name: "string for int", section: "[plugins.\"io.containerd.server.v1.regmend\"]\n  workers = \"two\"\n", wantErr: "workers"},
		{name: "unknown key", section: "[plugins.\"io.containerd.server.v1.regmend\"]\n  sweep_intreval = \"1m\"\n", wantErr: "unknown setting sweep_intreval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(path, []byte("version = 3\n"+tc.section), 0o644); err != nil {
				t.Fatal(err)
			}
			var ccfg srvconfig.Config
			if err := srvconfig.LoadConfig(t.Context(), path, &ccfg); err != nil {
				t.Fatalf("containerd LoadConfig: %v", err)
			}
			raw, err := ccfg.Decode(t.Context(), "io.containerd.server.v1.regmend", defaultSection())
			if err != nil {
				t.Fatalf("containerd's decode failed (containerd would not start): %v", err)
			}
			got, err := decodeSection(raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("decodeSection: err = %v, want an invalid-argument error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeSection: %v", err)
			}
			if len(got.Registries) == 0 {
				got.Registries = nil // the defaults list `registries = []`
			}
			if len(got.Peers) == 0 {
				got.Peers = nil // and `peers = []`
			}
			if len(got.Sources) == 0 {
				got.Sources = nil // and `sources = []`
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decodeSection:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
