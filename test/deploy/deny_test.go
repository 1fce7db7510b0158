package deploy

import (
	"path"
	"strings"
	"testing"

	"github.com/regmend/regmend/internal/deny"
	"github.com/regmend/regmend/test/e2e/harness"
)

// denyConfigMap is the chart's deny list ConfigMap for release "regmend".
const denyConfigMap = "regmend-deny"

// withoutDeny drops the deny list's ConfigMap, for tests about other ConfigMaps.
func withoutDeny(objs []harness.Object) []harness.Object {
	var out []harness.Object
	for _, o := range objs {
		if o.Kind != "ConfigMap" || o.Metadata.Name != denyConfigMap {
			out = append(out, o)
		}
	}
	return out
}

// denyMount returns --deny-file's value and the ConfigMap mounted over its
// directory, failing on a subPath mount (one the kubelet never updates).
func denyMount(t *testing.T, p harness.PodSpec, serve harness.Container) (file, configMap string) {
	t.Helper()
	file, ok := argValue(serve.Args, "--deny-file")
	if !ok {
		return "", ""
	}
	for _, m := range serve.VolumeMounts {
		if m.MountPath != path.Dir(file) {
			continue
		}
		if m.SubPath != "" || !m.ReadOnly {
			t.Errorf("deny list mount %+v: want read-only and no subPath (a subPath mount is never updated)", m)
		}
		for _, v := range p.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				return file, v.ConfigMap.Name
			}
		}
	}
	t.Fatalf("--deny-file %s is in no ConfigMap volume", file)
	return "", ""
}

// denyData returns the list the chart's deny ConfigMap holds, failing when
// it renders none, or none under deny.list.
func denyData(t *testing.T, objs []harness.Object) string {
	t.Helper()
	for _, o := range harness.Objects(objs, "ConfigMap") {
		if o.Metadata.Name != denyConfigMap {
			continue
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		decode(t, o, &cm)
		list, ok := cm.Data["deny.list"]
		if !ok {
			t.Fatalf("ConfigMap %s holds no deny.list: %v", denyConfigMap, cm.Data)
		}
		return list
	}
	t.Fatalf("no ConfigMap %s rendered", denyConfigMap)
	return ""
}

// TestChartDenyList: the deny list is a ConfigMap, by default empty, mounted
// as a directory and named to serve; entries render to a file regmend's own
// parser accepts; an existing ConfigMap replaces the chart's.
func TestChartDenyList(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	objs := parse(t, template(t, "--set", "registries={"+registry+"}",
		"--set-json", `deny.entries=["`+digest+`","edge:5000/leaky","edge:5000/app@`+digest+`"]`))
	_, p := pod(t, objs)
	file, cm := denyMount(t, p, serveContainer(t, p))
	if file != "/var/run/regmend/deny/deny.list" || cm != denyConfigMap {
		t.Fatalf("--deny-file %q in ConfigMap %q, want /var/run/regmend/deny/deny.list in %s", file, cm, denyConfigMap)
	}
	l, err := deny.Parse("deny.list", strings.NewReader(denyData(t, objs)))
	if err != nil {
		t.Fatalf("the rendered list does not parse: %v\n%s", err, denyData(t, objs))
	}
	if want := []string{digest, "edge:5000/leaky", "edge:5000/app@" + digest}; strings.Join(l.Entries(), ",") != strings.Join(want, ",") {
		t.Errorf("rendered entries %q, want %q", l.Entries(), want)
	}

	// By default: on, empty.
	objs = parse(t, template(t, "--set", "registries={"+registry+"}"))
	_, p = pod(t, objs)
	if _, cm := denyMount(t, p, serveContainer(t, p)); cm != denyConfigMap {
		t.Errorf("default deny list in %q, want %s", cm, denyConfigMap)
	}
	if l, err := deny.Parse("deny.list", strings.NewReader(denyData(t, objs))); err != nil || l.Len() != 0 {
		t.Errorf("default deny list: %v entries, %v; want an empty list", l.Len(), err)
	}

	// An existing ConfigMap: mounted, none created.
	objs = parse(t, template(t, "--set", "registries={"+registry+"}", "--set", "deny.existingConfigMap=ops-deny", "--set", "deny.key=list"))
	_, p = pod(t, objs)
	if file, cm := denyMount(t, p, serveContainer(t, p)); cm != "ops-deny" || path.Base(file) != "list" {
		t.Errorf("existingConfigMap: --deny-file %q in %q, want .../list in ops-deny", file, cm)
	}
	if cms := harness.Objects(withoutDeny(objs), "ConfigMap"); len(harness.Objects(objs, "ConfigMap")) != len(cms) {
		t.Error("the chart created its deny ConfigMap beside an existing one")
	}

	// An entry with a line break would render as more lines than given.
	for _, bad := range []string{`"edge:5000/a\nedge:5000/b"`, `"edge:5000/a\r\nkey: x"`} {
		out, err := runHelm(t, "template", "regmend", chartDir(t), "--set", "registries={"+registry+"}", "--set-json", "deny.entries=["+bad+"]")
		if err == nil || !strings.Contains(err.Error(), "line break") {
			t.Errorf("entry %s: helm template = %v; want it refused naming the line break\n%s", bad, err, out)
		}
	}

	// Off: no flag.
	objs = parse(t, template(t, "--set", "registries={"+registry+"}", "--set", "deny.enabled=false"))
	_, p = pod(t, objs)
	if file, _ := denyMount(t, p, serveContainer(t, p)); file != "" {
		t.Errorf("deny.enabled=false still passes --deny-file %s", file)
	}
}
