package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runArgs runs regmend against a containerd address that does not exist,
// so only what is decided before containerd is contacted can succeed.
func runArgs(args ...string) error {
	cmd := app()
	cmd.Writer, cmd.ErrWriter = io.Discard, io.Discard
	return cmd.Run(context.Background(), append([]string{"regmend", "-a", "/nonexistent.sock"}, args...))
}

func TestHealDenyFile(t *testing.T) {
	dir := t.TempDir()
	d := "sha256:" + strings.Repeat("ab", 32)
	list := filepath.Join(dir, "deny")
	os.WriteFile(list, []byte("# revoked\n"+d+"\nedge:5000/leaky\n"), 0o644)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte(d+"\nedge:5000/app:v1\n"), 0o644)

	// A denied reference exits 1 naming the entry, before containerd is
	// contacted.
	for _, c := range []struct{ ref, entry string }{
		{"edge:5000/app@" + d, d},
		{"edge:5000/leaky:v1", "edge:5000/leaky"},
		{"edge:5000/leaky@sha256:" + strings.Repeat("cd", 32), "edge:5000/leaky"},
	} {
		err := runArgs("heal", "--deny-file", list, c.ref)
		var ec *exitCode
		if err == nil || errors.As(err, &ec) || !strings.Contains(err.Error(), `deny list entry "`+c.entry+`"`) || !strings.Contains(err.Error(), c.ref) {
			t.Errorf("heal %s: %v; want exit 1 naming the reference and the entry %s", c.ref, err, c.entry)
		}
	}
	// What the list does not name goes on to containerd.
	if err := runArgs("heal", "--deny-file", list, "edge:5000/app:v1"); err == nil || strings.Contains(err.Error(), "deny") {
		t.Errorf("heal of an allowed reference: %v; want it to reach containerd (and fail there)", err)
	}
	// The config file's deny_file when --deny-file is not given.
	cfg := filepath.Join(dir, "regmend.toml")
	os.WriteFile(cfg, []byte("deny_file = \""+list+"\"\n"), 0o644)
	if err := runArgs("-c", cfg, "heal", "edge:5000/app@"+d); err == nil || !strings.Contains(err.Error(), "deny list entry") {
		t.Errorf("heal with -c naming deny_file: %v; want the reference refused", err)
	}

	// A bad or missing file is a usage error naming the file and the line.
	for _, args := range [][]string{
		{"heal", "--deny-file", bad, "edge:5000/app:v1"},
		{"check", "--registry", "edge:5000", "--deny-file", bad},
	} {
		err := runArgs(args...)
		var ec *exitCode
		if !errors.As(err, &ec) || ec.code != exitUsage || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%v: %v; want exit 2 naming %s line 2", args, err, bad)
		}
	}
	err := runArgs("heal", "--deny-file", filepath.Join(dir, "absent"), "edge:5000/app:v1")
	var ec *exitCode
	if !errors.As(err, &ec) || ec.code != exitUsage || !strings.Contains(err.Error(), "absent") {
		t.Errorf("a missing deny file: %v; want exit 2 naming it", err)
	}
}
