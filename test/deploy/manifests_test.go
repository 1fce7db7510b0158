package deploy

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/regmend/regmend/test/e2e/harness"
)

var update = flag.Bool("update", false, "rewrite deploy/manifests/regmend.yaml from the chart (make manifests)")

const manifestsHeader = `# regmend as plain Kubernetes manifests, for clusters without Helm: the chart
# deploy/helm/regmend rendered with deploy/manifests/values.yaml by
# ` + "`make manifests`" + `. Do not edit: change the chart or the values and render again.
#
# Before applying: replace the registry edge:5000 (init container hosts-0 and
# serve --registry), and create the peer token Secret (see values.yaml).
`

// TestManifestsUpToDate fails when the committed plain manifests differ from
// what the chart renders now. `make manifests` runs it with -update.
func TestManifestsUpToDate(t *testing.T) {
	dir := filepath.Join(repo(t), "deploy", "manifests")
	got := manifestsHeader + template(t, "-f", filepath.Join(dir, "values.yaml"))
	path := filepath.Join(dir, "regmend.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make manifests)", err)
	}
	if string(want) != got {
		t.Fatalf("%s is out of date with the chart: run make manifests", path)
	}
	// What the plain manifests must be to be usable: no generated secret.
	objs := parse(t, got)
	if n := len(harness.Objects(objs, "Secret")); n != 0 {
		t.Errorf("the plain manifests hold %d Secrets: a token committed to git is no secret", n)
	}
	_, p := pod(t, objs)
	checkCluster(t, objs, p, serveContainer(t, p), "regmend-peer-token")
}
