package deploy

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/regmend/regmend/test/e2e/harness"
)

// TestChartDashboard: dashboard.enabled renders one ConfigMap with Grafana's
// sidecar label holding a dashboard whose every query names only metrics
// regmend registers; off by default.
func TestChartDashboard(t *testing.T) {
	for _, o := range withoutDeny(parse(t, template(t, "--set", "registries={"+registry+"}"))) {
		if o.Kind == "ConfigMap" {
			t.Fatalf("a ConfigMap rendered by default: %s", o.Metadata.Name)
		}
	}
	objs := withoutDeny(parse(t, template(t, "--set", "registries={"+registry+"}", "--set", "dashboard.enabled=true")))
	o := one(t, objs, "ConfigMap")
	var cm struct {
		Data map[string]string `json:"data"`
	}
	decode(t, o, &cm)
	if o.Metadata.Labels["grafana_dashboard"] != "1" || o.Metadata.Namespace != "kube-system" {
		t.Errorf("labels %v in %q, want grafana_dashboard: \"1\" (Grafana's sidecar) in the release namespace", o.Metadata.Labels, o.Metadata.Namespace)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["regmend.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	registered := registeredMetrics(t)
	metric := regexp.MustCompile(`regmend_[a-z0-9_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			names := metric.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no regmend metric", p.Title, q.Expr)
			}
			for _, n := range names {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
				if !registered[n] && !registered[base] {
					t.Errorf("panel %q: %s is not a metric regmend registers", p.Title, n)
				}
				used[base] = true
			}
		}
	}
	for _, want := range []string{"regmend_mirror_requests_total", "regmend_heals_total", "regmend_pushed_bytes_total",
		"regmend_mirror_refused_total", "regmend_heal_queue_depth", "regmend_peer_requests_total"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// registeredMetrics are the metric names regmend's code registers: the
// string literals regmend_* in its non-test Go files (every one is a
// metric's Name).
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	name := regexp.MustCompile(`^regmend_[a-z0-9_]+$`)
	out := map[string]bool{}
	for _, dir := range []string{"resolver", "internal", "content"} {
		err := filepath.WalkDir(filepath.Join(repo(t), dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && name.MatchString(s) {
						out[s] = true
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !out["regmend_heals_total"] || !out["regmend_mirror_refused_total"] {
		t.Fatalf("found metrics %v: the scan missed known ones", slices.Sorted(maps.Keys(out)))
	}
	return out
}

// TestChartPrometheusRule: prometheusRule.enabled renders the two alerts,
// each on metrics regmend registers; off by default.
func TestChartPrometheusRule(t *testing.T) {
	if n := len(harness.Objects(parse(t, template(t, "--set", "registries={"+registry+"}")), "PrometheusRule")); n != 0 {
		t.Fatalf("%d PrometheusRules rendered by default", n)
	}
	objs := parse(t, template(t, "--set", "registries={"+registry+"}", "--set", "prometheusRule.enabled=true"))
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	decode(t, one(t, objs, "PrometheusRule"), &rule)
	registered := registeredMetrics(t)
	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			for _, n := range regexp.MustCompile(`regmend_[a-z0-9_]+`).FindAllString(r.Expr, -1) {
				if !registered[n] {
					t.Errorf("alert %s: %s is not a metric regmend registers", r.Alert, n)
				}
			}
		}
	}
	if got := strings.Join(alerts, " "); got != "RegmendHealsFailing RegmendKeepsServingFromNodeStore" {
		t.Errorf("alerts %q", got)
	}
}
