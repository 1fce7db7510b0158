package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
)

// The unit tests reach client-go's recorder through its fake clientset; the
// real API server is test/kube's.

func testNodeEvents(t *testing.T) (*nodeEvents, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "uid-n1"}})
	e := newNodeEvents(context.Background(), &fakeAPI{typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")}, cs}, "n1")
	t.Cleanup(e.stop)
	return e, cs
}

// waitEvents waits until every reason in want has an Event and returns them.
func waitEvents(t *testing.T, cs *fake.Clientset, want ...string) []corev1.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := cs.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range l.Items {
			seen[e.Reason] = true
		}
		all := true
		for _, r := range want {
			all = all && seen[r]
		}
		if all {
			return l.Items
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %v not all posted; have %+v", want, l.Items)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEventsFoldAPullIntoOneServed(t *testing.T) {
	e, cs := testNodeEvents(t)
	ref := mirror.Ref{Registry: "edge:5000", Repository: "team/app", Kind: "blobs"}
	for range 1000 {
		e.served(ref, false)
	}
	target := heal.Target{Registry: "edge:5000", Repository: "team/app", Root: ocispec.Descriptor{Digest: digest.FromString("root")}}
	e.healed(target, &heal.Result{Pushed: 3, BytesPushed: 4096}, nil, 1500*time.Millisecond)
	// The heal posts after the 1,000 serves: once it is there, every serve
	// the correlator let through has been written.
	evs := waitEvents(t, cs, ReasonServed, ReasonHealed)
	var served, healed []corev1.Event
	for _, ev := range evs {
		switch ev.Reason {
		case ReasonServed:
			served = append(served, ev)
		case ReasonHealed:
			healed = append(healed, ev)
		}
		if ev.InvolvedObject.Kind != "Node" || ev.InvolvedObject.Name != "n1" || ev.InvolvedObject.UID != "uid-n1" {
			t.Errorf("event on %+v, want Node n1 (uid-n1)", ev.InvolvedObject)
		}
	}
	if len(served) != 1 {
		t.Fatalf("a 1,000-blob pull made %d Served events, want 1: %+v", len(served), served)
	}
	if served[0].Count < 2 || !strings.Contains(served[0].Message, "edge:5000/team/app from this node's content store") {
		t.Errorf("Served = count %d, %q; want a folded count and the repository and source", served[0].Count, served[0].Message)
	}
	if len(healed) != 1 || !strings.Contains(healed[0].Message, "pushed 3 blobs and manifests (4096 bytes)") ||
		!strings.Contains(healed[0].Message, "1.5s") || healed[0].Type != corev1.EventTypeNormal {
		t.Errorf("Healed = %+v; want one Normal event with blobs, bytes and duration", healed)
	}
}

func TestEventsHealOutcomes(t *testing.T) {
	e, cs := testNodeEvents(t)
	target := heal.Target{Registry: "edge:5000", Repository: "team/app", Root: ocispec.Descriptor{Digest: digest.FromString("root")}}
	gone := digest.FromString("layer")
	partial := &heal.Result{Pushed: 1, Unhealable: 1, Nodes: []heal.NodeResult{
		{Digest: digest.FromString("cfg"), Kind: "config", Status: heal.StatusPushed},
		{Digest: gone, Kind: "layer", Status: heal.StatusUnhealable, Reason: "not in the local store"},
	}}
	e.healed(target, partial, fmt.Errorf("heal: %w", errdefs.ErrNotFound), time.Second)
	e.healed(target, nil, errors.New("registry refused the push"), time.Second)
	e.healed(target, &heal.Result{Present: 4}, nil, time.Second) // registry whole: nothing to say
	e.Denied("edge:5000/team/app@"+gone.String(), gone.String())
	evs := waitEvents(t, cs, ReasonHealPartial, ReasonHealFailed, ReasonDenied)
	for _, ev := range evs {
		if ev.Type != corev1.EventTypeWarning {
			t.Errorf("%s is %s, want Warning", ev.Reason, ev.Type)
		}
		switch ev.Reason {
		case ReasonHealPartial:
			if !strings.Contains(ev.Message, "layer "+gone.String()+" (not in the local store)") {
				t.Errorf("HealPartial %q does not name what is absent everywhere", ev.Message)
			}
		case ReasonHealFailed:
			if !strings.Contains(ev.Message, "registry refused the push") {
				t.Errorf("HealFailed %q does not say why", ev.Message)
			}
		case ReasonHealed:
			t.Errorf("a heal that pushed nothing posted %q", ev.Message)
		}
	}
}

func TestEventsServedFromPeer(t *testing.T) {
	e, cs := testNodeEvents(t)
	peer := peerFallback{fallbackFunc(func(w http.ResponseWriter, _ *http.Request, _ mirror.Ref) bool {
		w.Write([]byte("blob"))
		return true
	})}
	h := e.observeServed(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer.ServeFallback(w, r, mirror.Ref{})
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/team/app/blobs/"+digest.FromString("b").String()+"?ns=edge:5000", nil))
	evs := waitEvents(t, cs, ReasonServed)
	if !strings.Contains(evs[0].Message, "served edge:5000/team/app from a peer's content store") {
		t.Errorf("Served = %q, want the peer named as source", evs[0].Message)
	}
}

// fakeAPI is EventsAPI over client-go's fake clientset.
type fakeAPI struct {
	typedcorev1.EventSinkImpl
	cs *fake.Clientset
}

func (f *fakeAPI) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	return f.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

type fallbackFunc func(http.ResponseWriter, *http.Request, mirror.Ref) bool

func (f fallbackFunc) ServeFallback(w http.ResponseWriter, r *http.Request, ref mirror.Ref) bool {
	return f(w, r, ref)
}

func TestEventsOffOutsideAPod(t *testing.T) {
	for _, env := range []map[string]string{{}, {envServiceHost: "10.96.0.1"}} {
		e := startEvents(context.Background(), func(c *eventsConfig) { c.getenv = func(k string) string { return env[k] } })
		if e != nil {
			t.Errorf("events on with environment %v; want off (no API server, or no NODE_NAME)", env)
		}
	}
}
