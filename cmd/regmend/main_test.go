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

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in, registry, repo string
		ok                 bool
	}{
		{"edge:5000/app@sha256:" + strings.Repeat("a", 64), "edge:5000", "app", true},
		{"edge.example/team/app:v1", "edge.example", "team/app", true},
		{"localhost/app:v1", "localhost", "app", true},
		{"app:v1", "", "", false},                   // no registry host
		{"docker/app:v1", "", "", false},            // "docker" is a path component, not a host
		{"edge:5000/App:v1", "", "", false},         // uppercase repository
		{"edge:5000/app@sha256:abc", "", "", false}, // short digest
		{"edge:5000/app@md5:" + strings.Repeat("a", 32), "", "", false},
		{"edge:5000/../etc:v1", "", "", false},
		{"edge:5000/a//b:v1", "", "", false}, // cleaned to a/b by containerd's parser
		{"edge:5000/./app:v1", "", "", false},
		{"edge:5000/app", "edge:5000", "app", true},
	} {
		ref, err := parseRef(c.in)
		if (err == nil) != c.ok {
			t.Errorf("parseRef(%q) err = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if c.ok && (ref.Registry != c.registry || ref.Repository != c.repo) {
			t.Errorf("parseRef(%q) = %s %s, want %s %s", c.in, ref.Registry, ref.Repository, c.registry, c.repo)
		}
		var ec *exitCode
		if !c.ok && (!errors.As(err, &ec) || ec.code != exitUsage) {
			t.Errorf("parseRef(%q) error is not a usage error: %v", c.in, err)
		}
	}
}

// Bad input exits 2 with a message naming what was wrong, before anything
// is contacted (the containerd address does not exist).
func TestUsageErrors(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "regmend.toml")
	os.WriteFile(cfg, []byte("registry = [\"edge\"]\n"), 0o644)
	shortToken := filepath.Join(t.TempDir(), "token")
	os.WriteFile(shortToken, []byte("short\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"heal"}, "one image reference"},
		{[]string{"heal", "app"}, "name the registry host"},
		{[]string{"heal", "--retain", "forever", "edge:5000/app:v1"}, "--retain"},
		{[]string{"heal", "--bogus", "edge:5000/app:v1"}, "bogus"},
		{[]string{"inspect", "-o", "yaml", "edge:5000/app:v1"}, "yaml"},
		{[]string{"serve"}, "name the registries"},
		{[]string{"serve", "--registry", "https://edge"}, "registry"},
		{[]string{"serve", "--registry", "edge", "--retain", "x"}, "retain"},
		{[]string{"-c", cfg, "serve"}, "unknown setting registry"},
		{[]string{"check"}, "--registry"},
		{[]string{"hosts"}, "one registry"},
		{[]string{"hosts", "edge:5000", "--server-scheme", "ftp"}, "server-scheme"},
		{[]string{"hosts", "edge:5000/x", "--hosts-dir", t.TempDir()}, "edge:5000/x"},
		{[]string{"hosts", "--remove", "edge:5000", "--server-scheme", "http"}, "--remove takes no --server-scheme"},
		{[]string{"hosts", "edge:5000", "--keep-mirror-token", "--hosts-dir", t.TempDir()}, "--keep-mirror-token goes with --remove"},
		{[]string{"hosts", "--remove", "edge:5000", "--keep-mirror-token", "--hosts-dir", t.TempDir()}, "goes with --mirror-token-file"},
		{[]string{"hosts", "--remove", "edge:5000/x", "--hosts-dir", t.TempDir()}, "edge:5000/x"},
		{[]string{"hosts", "edge:5000", "--hosts-dir", t.TempDir(), "--mirror-token-file", shortToken}, "at least 32"},
		{[]string{"serve", "--registry", "edge", "--mirror-token-file", shortToken}, "at least 32"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			cmd := app()
			cmd.Writer, cmd.ErrWriter = io.Discard, io.Discard
			err := cmd.Run(context.Background(), append([]string{"regmend", "-a", "/nonexistent.sock"}, c.args...))
			var ec *exitCode
			if !errors.As(err, &ec) || ec.code != exitUsage || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want a usage error (exit 2) naming %q", err, c.want)
			}
		})
	}
}
