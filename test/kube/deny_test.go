package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/test/e2e/harness"
)

// denyThroughChart is issue 19 on the cluster: a pod runs revoked@D2; the
// operator denies D2 with helm upgrade (the chart's deny ConfigMap; the
// regmend pod is not restarted) and, once the node's regmend has the entry
// in force, deletes D2 from the registry. A new pod on D2 fails its pull as
// it would without regmend: regmend refused it (a Denied event on the Node,
// regmend_denied_total{where="mirror"} rose) and the registry still lacks
// D2, where step 3 healed an orphan before its pod ran. Deny first: regmend
// heals a digest deleted while it is still allowed (the sweep after a new
// image does) before the entry reaches the node. upgrade runs helm upgrade
// --reuse-values with args.
func denyThroughChart(ctx context.Context, t *testing.T, c *cluster, reg *harness.Registry, sleeper v1.Layer, upgrade func(args ...string) (string, error), metricsPort int) {
	start := time.Now()
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	d2 := pushRunnable(ctx, t, reg.Ref("revoked:v1"), runnable(t, sleeper, 1)).Digest
	byDigest := reg.Ref("revoked@" + d2.String())
	c.runPod(t, ctx, "revoked-first", byDigest)

	before := c.regmendPod(t, ctx)
	upgraded := time.Now()
	if out, err := upgrade("--set-json", `deny.entries=["`+d2.String()+`"]`); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	err := harness.WaitFor(time.Minute, nil, "the deny entry in force on the node", func() error {
		if n := harness.ScrapeMetric(t, metrics, "regmend_deny_entries"); n != 1 {
			return fmt.Errorf("regmend_deny_entries = %v, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deny entry %s in force (regmend_deny_entries 1) %s after helm upgrade", d2, time.Since(upgraded).Round(time.Millisecond))
	if after := c.regmendPod(t, ctx); after.UID != before.UID || restarts(after) != restarts(before) {
		t.Errorf("regmend pod %s (uid %s, %d restarts) after helm upgrade, want %s (uid %s, %d restarts): the deny list needs no restart",
			after.Name, after.UID, restarts(after), before.Name, before.UID, restarts(before))
	}
	reg.DeleteManifest("revoked", d2)
	reg.GarbageCollect()
	if reg.ManifestExists("revoked", d2) {
		t.Fatalf("registry still holds D2 %s after DELETE and GC", d2)
	}
	deniedBefore := harness.ScrapeMetric(t, metrics, "regmend_denied_total", `where="mirror"`)

	// A new pod on D2: its pull fails "not found", as without regmend.
	c.createPod(t, ctx, "revoked-after-deny", byDigest)
	var pulled string
	err = harness.WaitFor(time.Minute, nil, "pod revoked-after-deny's pull failing", func() error {
		p, err := c.client.CoreV1().Pods("default").Get(ctx, "revoked-after-deny", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase == corev1.PodRunning {
			t.Fatalf("pod on denied D2 %s Running: %s\nevents: %s", d2, describe(p), c.eventsOf(ctx, "default", p.Name))
		}
		for _, s := range p.Status.ContainerStatuses {
			if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, "not found") {
				pulled = w.Reason + ": " + w.Message
				return nil
			}
		}
		return fmt.Errorf("phase %s: %s", p.Status.Phase, describe(p))
	})
	if err != nil {
		t.Fatalf("%v\nevents: %s", err, c.eventsOf(ctx, "default", "revoked-after-deny"))
	}
	t.Logf("pod on denied D2 not Running, its pull failed: %s", pulled)

	// regmend refused it at its mirror, and posted it on the Node.
	ev := c.waitNodeEvent(t, ctx, "a Denied event for revoked@D2", func(e corev1.Event) bool {
		return e.Reason == daemon.ReasonDenied && strings.Contains(e.Message, "revoked@"+d2.String())
	})
	t.Logf("event on Node %s: %s %s (count %d): %s", nodeName, ev.Type, ev.Reason, ev.Count, ev.Message)
	if n := harness.ScrapeMetric(t, metrics, "regmend_denied_total", `where="mirror"`); n <= deniedBefore {
		t.Errorf(`regmend_denied_total{where="mirror"} = %v after the denied pull, was %v before`, n, deniedBefore)
	} else {
		t.Logf(`regmend_denied_total{where="mirror"} %v -> %v`, deniedBefore, n)
	}
	// The mirror refuses where it served step 3's orphan and queued its
	// heal; by now that heal would have pushed D2 back.
	if reg.ManifestExists("revoked", d2) {
		t.Errorf("registry holds denied D2 %s again: regmend re-pushed it", d2)
	} else {
		t.Logf("registry: HEAD revoked@%s 404 after the refused pull", d2)
	}
	t.Logf("deny step %s", time.Since(start).Round(time.Millisecond))
}

// regmendPod is the DaemonSet's pod on the node.
func (c *cluster) regmendPod(t *testing.T, ctx context.Context) *corev1.Pod {
	t.Helper()
	l, err := c.client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=regmend"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 {
		t.Fatalf("%d regmend pods in kube-system, want 1: %s", len(l.Items), c.podStates(ctx, "kube-system"))
	}
	return &l.Items[0]
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n += s.RestartCount
	}
	return n
}

// waitNodeEvent waits until regmend posted an Event on the Node that match
// accepts, and returns it.
func (c *cluster) waitNodeEvent(t *testing.T, ctx context.Context, what string, match func(corev1.Event) bool) corev1.Event {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Node", "involvedObject.name": nodeName, "source": daemon.EventsComponent}.AsSelector().String()
	var found corev1.Event
	err := harness.WaitFor(time.Minute, nil, what, func() error {
		l, err := c.client.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		for _, e := range l.Items {
			if match(e) {
				found = e
				return nil
			}
		}
		var have []string
		for _, e := range l.Items {
			have = append(have, e.Reason+": "+e.Message)
		}
		return fmt.Errorf("none among %d: %v", len(l.Items), have)
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
