package deploy

import (
	"slices"
	"testing"

	"github.com/regmend/regmend/test/e2e/harness"
)

// TestChartEvents: by default the pod runs as a ServiceAccount that may
// create and patch events and get nodes, with NODE_NAME from the downward
// API; events.enabled=false takes all of it away, token included.
func TestChartEvents(t *testing.T) {
	type rule struct {
		APIGroups []string `json:"apiGroups"`
		Resources []string `json:"resources"`
		Verbs     []string `json:"verbs"`
	}
	type podAccess struct {
		Spec struct {
			Template struct {
				Spec struct {
					ServiceAccountName           string `json:"serviceAccountName"`
					AutomountServiceAccountToken *bool  `json:"automountServiceAccountToken"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	nodeName := func(c harness.Container) bool {
		return slices.ContainsFunc(c.Env, func(e harness.EnvVar) bool {
			return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		})
	}

	objs := parse(t, template(t, "--set", "registries={"+registry+"}"))
	var acc podAccess
	decode(t, one(t, objs, "DaemonSet"), &acc)
	sa := one(t, objs, "ServiceAccount")
	if got := acc.Spec.Template.Spec; got.ServiceAccountName != sa.Metadata.Name || got.AutomountServiceAccountToken == nil || !*got.AutomountServiceAccountToken {
		t.Errorf("pod service account %q automount %v, want %q with its token", got.ServiceAccountName, got.AutomountServiceAccountToken, sa.Metadata.Name)
	}
	var role struct{ Rules []rule }
	decode(t, one(t, objs, "ClusterRole"), &role)
	can := func(group, resource, verb string) bool {
		return slices.ContainsFunc(role.Rules, func(r rule) bool {
			return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb)
		})
	}
	for _, want := range [][3]string{{"", "events", "create"}, {"", "events", "patch"}, {"", "nodes", "get"}} {
		if !can(want[0], want[1], want[2]) {
			t.Errorf("ClusterRole cannot %s %s (group %q): %+v", want[2], want[1], want[0], role.Rules)
		}
	}
	var binding struct {
		RoleRef  struct{ Name string } `json:"roleRef"`
		Subjects []struct{ Kind, Name, Namespace string }
	}
	decode(t, one(t, objs, "ClusterRoleBinding"), &binding)
	if binding.RoleRef.Name != one(t, objs, "ClusterRole").Metadata.Name || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Name != sa.Metadata.Name || binding.Subjects[0].Namespace != sa.Metadata.Namespace {
		t.Errorf("ClusterRoleBinding %+v does not bind the ClusterRole to %s/%s", binding, sa.Metadata.Namespace, sa.Metadata.Name)
	}
	_, p := pod(t, objs)
	if !nodeName(serveContainer(t, p)) {
		t.Error("serve has no NODE_NAME from spec.nodeName: events would be off")
	}

	objs = parse(t, template(t, "--set", "registries={"+registry+"}", "--set", "events.enabled=false"))
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		if n := len(harness.Objects(objs, kind)); n != 0 {
			t.Errorf("events.enabled=false renders %d %s", n, kind)
		}
	}
	var off podAccess
	decode(t, one(t, objs, "DaemonSet"), &off)
	if got := off.Spec.Template.Spec; got.AutomountServiceAccountToken == nil || *got.AutomountServiceAccountToken || got.ServiceAccountName != "" {
		t.Errorf("events.enabled=false: service account %q automount %v, want no token", got.ServiceAccountName, got.AutomountServiceAccountToken)
	}
	if _, p := pod(t, objs); nodeName(serveContainer(t, p)) {
		t.Error("events.enabled=false still sets NODE_NAME")
	}
}
