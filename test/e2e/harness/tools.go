// Package harness runs real components for regmend's end-to-end tests: a
// containerd daemon with CRI (driven through crictl, ctr and the Go client), a
// distribution registry, and image fixtures pushed with go-containerregistry.
//
// Every component runs as a child process of the test, listens on loopback or
// on a unix socket in a private temporary directory, writes its output to a log
// file, and is stopped by t.Cleanup. When a test fails, the last lines of every
// server log it started are printed with t.Logf.
//
// Binaries come from the directory named by $REGMEND_TOOLS (the Makefile
// exports it), else from <repo root>/.cache/bin. A missing binary skips the
// test loudly, or fails it when $CI is set: the e2e suite never silently skips
// in CI. Tests are skipped under -short.
//
// Helpers that take a testing.TB, and methods of objects created with one,
// report setup failures with t.Fatalf, so they must be called from the test's
// goroutine.
package harness

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// EnvTools names the environment variable holding the directory of the real
// third-party binaries (containerd, ctr, registry, crictl).
const EnvTools = "REGMEND_TOOLS"

// EnvBin names the environment variable holding the directory of regmend's own
// binaries (regmend, containerd-regmend), as built by `make build`.
const EnvBin = "REGMEND_BIN"

// Names of the third-party binaries the harness runs.
const (
	ToolContainerd = "containerd"
	ToolCtr        = "ctr"
	ToolRegistry   = "registry"
	ToolCrictl     = "crictl"
)

// RequireE2E skips the test under `go test -short`. Every constructor in this
// package calls it, so a test only needs it when it does e2e work first.
func RequireE2E(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e test skipped with -short")
	}
}

// RepoRoot returns the directory holding regmend's go.mod, found by walking up
// from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ToolsDir returns the directory that holds the third-party binaries:
// $REGMEND_TOOLS, else <repo root>/.cache/bin ("" if neither can be found).
func ToolsDir() string {
	return envOrRepoDir(EnvTools, ".cache", "bin")
}

// BinDir returns the directory that holds regmend's own binaries: $REGMEND_BIN,
// else <repo root>/bin ("" if neither can be found).
func BinDir() string {
	return envOrRepoDir(EnvBin, "bin")
}

func envOrRepoDir(env string, rel ...string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	root, err := RepoRoot()
	if err != nil {
		return ""
	}
	return filepath.Join(append([]string{root}, rel...)...)
}

// Tool returns the absolute path of a third-party binary (see ToolContainerd
// and friends) from ToolsDir. If it is missing the test is skipped with a loud
// message, or failed when $CI is non-empty. It also skips under -short.
func Tool(t testing.TB, name string) string {
	t.Helper()
	return requireBinary(t, ToolsDir(), name, "make tools", EnvTools)
}

// ProductBinary returns the absolute path of one of regmend's own binaries
// (e.g. "regmend", "containerd-regmend") from BinDir, with the same
// skip-or-fail rule as Tool.
func ProductBinary(t testing.TB, name string) string {
	t.Helper()
	return requireBinary(t, BinDir(), name, "make build", EnvBin)
}

func requireBinary(t testing.TB, dir, name, makeTarget, env string) string {
	t.Helper()
	RequireE2E(t)
	path := filepath.Join(dir, name)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	st, err := os.Stat(path)
	if err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("e2e: required binary %q not found at %s (run `%s` before the e2e suite; CI must not skip e2e)", name, path, makeTarget)
	}
	t.Skipf("SKIPPING e2e: binary %q not found at %s — run `%s` (or set $%s) to run the end-to-end tests", name, path, makeTarget, env)
	return ""
}
