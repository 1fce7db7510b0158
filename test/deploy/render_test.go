// Package deploy tests what ships regmend to nodes: the Helm chart under
// deploy/helm/regmend, rendered by the real helm (built from tools/go.mod)
// and asserted on as parsed Kubernetes objects, and the plain manifests
// rendered from it.
package deploy

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmend/regmend/test/e2e/harness"
)

// helm returns the helm binary from the tools cache. Missing, it skips the
// test, or fails it in CI ($CI set): chart tests never silently vanish there.
func helm(t *testing.T) string {
	t.Helper()
	p := filepath.Join(harness.ToolsDir(), "helm")
	if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("helm not found at %s: `make tools` builds it (CI must not skip the chart tests)", p)
	}
	t.Skipf("SKIPPING: helm not found at %s; run `make tools`", p)
	return ""
}

// repo returns the repository root.
func repo(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func chartDir(t *testing.T) string { return filepath.Join(repo(t), "deploy", "helm", "regmend") }

// runHelm runs helm with args and returns stdout; stderr goes into the error.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	// A private home: no repositories, plugins or cache from the machine.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), errors.New(strings.TrimSpace(errb.String()) + ": " + err.Error())
	}
	return out.String(), nil
}

// template renders the chart as release "regmend" in kube-system with the
// given extra helm arguments (--set, -f).
func template(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "regmend", chartDir(t), "--namespace", "kube-system"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return out
}

// parse splits helm's output into objects.
func parse(t *testing.T, manifest string) []harness.Object {
	t.Helper()
	objs, err := harness.ParseManifests(manifest)
	if err != nil {
		t.Fatalf("%v\n%s", err, manifest)
	}
	return objs
}

// decode reads o into a typed view.
func decode(t *testing.T, o harness.Object, into any) {
	t.Helper()
	if err := o.Decode(into); err != nil {
		t.Fatal(err)
	}
}

// one returns the only object of a kind, failing otherwise.
func one(t *testing.T, objs []harness.Object, kind string) harness.Object {
	t.Helper()
	f := harness.Objects(objs, kind)
	if len(f) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(f), kind)
	}
	return f[0]
}
