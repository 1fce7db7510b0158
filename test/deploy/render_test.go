// Package deploy tests what ships regmend to nodes: the Helm chart under
// deploy/helm/regmend, rendered by the real helm (built from tools/go.mod)
// and asserted on as parsed Kubernetes objects, and the plain manifests
// rendered from it.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

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

// object is one rendered Kubernetes object: its identity, and the whole of
// it for decoding into the few typed views below.
type object struct {
	Kind     string
	Name     string
	Metadata meta
	raw      map[string]any
}

type meta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// parse splits helm's output into objects, by YAML documents.
func parse(t *testing.T, manifest string) []object {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(manifest))
	var objs []object
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, manifest)
		}
		if m == nil {
			continue
		}
		o := object{raw: m}
		o.Kind, _ = m["kind"].(string)
		decode(t, m["metadata"], &o.Metadata)
		o.Name = o.Metadata.Name
		objs = append(objs, o)
	}
	return objs
}

// decode converts a parsed YAML value into a typed view through JSON, the
// way the API server reads it.
func decode(t *testing.T, v any, into any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("decode %T: %v", into, err)
	}
}

// find returns the objects of a kind.
func find(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only object of a kind, failing otherwise.
func one(t *testing.T, objs []object, kind string) object {
	t.Helper()
	f := find(objs, kind)
	if len(f) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(f), kind)
	}
	return f[0]
}
