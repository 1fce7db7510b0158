package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostsWarnsOfDiscardedLayers: `regmend hosts` names containerd's
// discard_unpacked_layers = true on stderr with its file, line and fix, and
// still succeeds (warnings never change the exit status).
func TestHostsWarnsOfDiscardedLayers(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.toml")
	b, err := os.ReadFile("../../internal/ctrconf/testdata/containerd-2-v3.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := app()
	cmd.Writer, cmd.ErrWriter = &bytes.Buffer{}, &stderr
	err = cmd.Run(context.Background(), []string{"regmend", "--hosts-dir", dir, "hosts",
		"--dry-run", "--containerd-config", config, "edge:5000"})
	if err != nil {
		t.Fatalf("hosts: %v\n%s", err, stderr.String())
	}
	want := "warning: containerd: " + config + ":11: discard_unpacked_layers = true: "
	if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "discard_unpacked_layers = false") {
		t.Errorf("stderr does not name the setting at %s:11 with its fix:\n%s", config, stderr.String())
	}
}
