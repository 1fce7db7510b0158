package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// TestRunLogsContainerdTraps: at start the daemon logs each containerd
// setting that defeats regmend once, with its file:line and fix.
func TestRunLogsContainerdTraps(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.toml")
	b, err := os.ReadFile("../ctrconf/testdata/containerd-2-v3.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(l))
	cfg := DefaultConfig()
	cfg.ContainerdConfig, cfg.Registries = config, []string{"edge:5000"}
	logContainerdTraps(ctx, cfg)
	out := buf.String()
	if n := strings.Count(out, "containerd setting defeats regmend"); n != 1 || !strings.Contains(out, config+":11") ||
		!strings.Contains(out, "discard_unpacked_layers = false") {
		t.Errorf("log (%d findings), want discard_unpacked_layers at %s:11 once, with its fix:\n%s", n, config, out)
	}
}
