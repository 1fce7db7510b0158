package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func runApp(t *testing.T, args ...string) error {
	t.Helper()
	cmd := app()
	cmd.Writer, cmd.ErrWriter = io.Discard, io.Discard
	return cmd.Run(context.Background(), append([]string{"regmend"}, args...))
}

// One `regmend hosts` lists regmend for every registry it names, and one
// `hosts --remove` takes every entry out: the chart's hooks run one command.
func TestHostsTakesSeveralRegistries(t *testing.T) {
	dir := t.TempDir()
	regs := []string{"edge:5000", "mirror.example.com"}
	flags := []string{"--hosts-dir", dir, "hosts", "--containerd-config", filepath.Join(dir, "none.toml")}
	if err := runApp(t, append(flags, regs...)...); err != nil {
		t.Fatalf("hosts: %v", err)
	}
	for _, r := range regs {
		if _, err := os.Stat(filepath.Join(dir, r, "hosts.toml")); err != nil {
			t.Errorf("hosts.toml of %s: %v", r, err)
		}
	}
	if err := runApp(t, append(append(flags, "--remove"), regs...)...); err != nil {
		t.Fatalf("hosts --remove: %v", err)
	}
	for _, r := range regs {
		if _, err := os.Stat(filepath.Join(dir, r, "hosts.toml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("hosts.toml of %s after --remove: %v, want it gone (regmend created it)", r, err)
		}
	}
}

// A bad name anywhere in the list is a usage error before any file is
// written.
func TestHostsChecksEveryNameFirst(t *testing.T) {
	dir := t.TempDir()
	err := runApp(t, "--hosts-dir", dir, "hosts", "edge:5000", "https://bad")
	var ec *exitCode
	if !errors.As(err, &ec) || ec.code != exitUsage {
		t.Fatalf("err = %v, want a usage error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("hosts wrote %d entries before refusing a bad name", len(entries))
	}
}
