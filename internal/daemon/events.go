package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/mirror"
)

// Event reasons regmend posts on its node's Node object.
const (
	// ReasonServed: the mirror served content the registry lacked, from
	// this node's store or from a peer's.
	ReasonServed = "Served"
	// ReasonHealed: a heal restored what the registry lacked.
	ReasonHealed = "Healed"
	// ReasonHealPartial: a heal left nodes absent everywhere.
	ReasonHealPartial = "HealPartial"
	// ReasonHealFailed: a heal failed.
	ReasonHealFailed = "HealFailed"
	// ReasonDenied: the deny list refused content (see nodeEvents.Denied).
	ReasonDenied = "Denied"
)

// EventsComponent is the source component of regmend's Events.
const EventsComponent = "regmend"

// Environment the chart sets: NODE_NAME from the downward API;
// KUBERNETES_SERVICE_HOST is set by the kubelet in every pod.
const (
	EnvNodeName    = "NODE_NAME"
	envServiceHost = "KUBERNETES_SERVICE_HOST"
)

// nodeGetTimeout bounds the start-up lookup of the Node's UID.
const nodeGetTimeout = 10 * time.Second

// nodeEvents posts Kubernetes Events on this node's Node object through
// client-go's recorder, whose correlator folds identical events into one
// (a count) and similar ones into an aggregate, so a pull of 1,000 blobs
// from one repository is one Served event. A nil *nodeEvents posts nothing:
// events are off outside a pod, and that is logged once at start.
type nodeEvents struct {
	rec       record.EventRecorder
	node      *corev1.ObjectReference
	broadcast record.EventBroadcaster
}

// EventsOption configures how the daemon reaches the Kubernetes API.
type EventsOption func(*eventsConfig)

type eventsConfig struct {
	client EventsAPI
	node   string
	getenv func(string) string
}

// WithEventsClient posts events through client on node nodeName, instead
// of the in-cluster config and NODE_NAME.
func WithEventsClient(client EventsAPI, nodeName string) EventsOption {
	return func(c *eventsConfig) { c.client, c.node = client, nodeName }
}

// startEvents starts posting events, or says once why it does not.
func startEvents(ctx context.Context, opts ...EventsOption) *nodeEvents {
	c := eventsConfig{getenv: os.Getenv}
	for _, o := range opts {
		o(&c)
	}
	if c.client == nil {
		if c.getenv(envServiceHost) == "" {
			log.G(ctx).Info("Kubernetes Events off: not running in a pod (KUBERNETES_SERVICE_HOST unset)")
			return nil
		}
		if c.node = c.getenv(EnvNodeName); c.node == "" {
			log.G(ctx).Warn("Kubernetes Events off: NODE_NAME is unset (the chart sets it from spec.nodeName unless events.enabled is false)")
			return nil
		}
		cfg, err := rest.InClusterConfig()
		if err == nil {
			c.client, err = newCoreAPI(cfg)
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("Kubernetes Events off: no API access from this pod")
			return nil
		}
	}
	return newNodeEvents(ctx, c.client, c.node)
}

func newNodeEvents(ctx context.Context, client EventsAPI, nodeName string) *nodeEvents {
	// kubelet's own node events use the name as UID, and `kubectl describe
	// node` looks under both; the real UID is better where it can be read.
	ref := &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: nodeName, UID: types.UID(nodeName)}
	gctx, cancel := context.WithTimeout(ctx, nodeGetTimeout)
	defer cancel()
	if n, err := client.GetNode(gctx, nodeName); err != nil {
		log.G(ctx).WithError(err).WithField("node", nodeName).Warn("Kubernetes Events: cannot read the Node; posting under its name as UID, as kubelet does")
	} else {
		ref.UID = n.UID
	}
	b := record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(record.CorrelatorOptions{
		// The default spam filter keys on source, object and type only:
		// a burst of Served would use up the bucket Healed shares.
		SpamKeyFunc: func(e *corev1.Event) string { return e.Source.Component + "/" + e.Type + "/" + e.Reason },
	}))
	b.StartRecordingToSink(client)
	// The recorder is only ever given the Node's reference: core/v1 is
	// all its scheme needs.
	sch := runtime.NewScheme()
	_ = corev1.AddToScheme(sch)
	log.G(ctx).WithField("node", nodeName).Info("Kubernetes Events on: posted on this node's Node object")
	return &nodeEvents{
		rec:       b.NewRecorder(sch, corev1.EventSource{Component: EventsComponent, Host: nodeName}),
		node:      ref,
		broadcast: b,
	}
}

// stop flushes nothing more and ends the recorder's goroutines.
func (e *nodeEvents) stop() {
	if e != nil {
		e.broadcast.Shutdown()
	}
}

// served records that the mirror served ref, from this node's store or a
// peer's. The message names only the repository and the source, so every
// blob of one pull folds into one event.
func (e *nodeEvents) served(ref mirror.Ref, fromPeer bool) {
	if e == nil {
		return
	}
	from := "this node's content store"
	if fromPeer {
		from = "a peer's content store"
	}
	e.rec.Eventf(e.node, corev1.EventTypeNormal, ReasonServed,
		"served %s/%s from %s: the registry lacks it; a heal is queued", ref.Registry, ref.Repository, from)
}

// healed records one heal's outcome; a heal that found the registry whole
// posts nothing.
func (e *nodeEvents) healed(t heal.Target, res *heal.Result, err error, took time.Duration) {
	if e == nil {
		return
	}
	took = took.Round(time.Millisecond)
	switch {
	case err != nil && res != nil && res.Unhealable > 0 && errdefs.IsNotFound(err):
		e.rec.Eventf(e.node, corev1.EventTypeWarning, ReasonHealPartial,
			"partial heal of %s: %d of %d nodes absent in the registry and on this node: %s; pushed %d (%d bytes) in %s",
			t, res.Unhealable, len(res.Nodes), absent(res.Nodes), res.Pushed+res.Mounted, res.BytesPushed, took)
	case err != nil:
		e.rec.Eventf(e.node, corev1.EventTypeWarning, ReasonHealFailed, "heal of %s failed after %s: %v", t, took, err)
	case res == nil || res.Pushed+res.Mounted == 0:
	default:
		msg := fmt.Sprintf("healed %s: pushed %d blobs and manifests (%d bytes), mounted %d, in %s",
			t, res.Pushed, res.BytesPushed, res.Mounted, took)
		if len(res.RetentionTags) > 0 {
			msg += "; retention tag " + strings.Join(res.RetentionTags, ", ")
		}
		e.rec.Event(e.node, corev1.EventTypeNormal, ReasonHealed, msg)
	}
}

// Denied records that the deny list refused what (a reference or digest)
// because of entry; every Denier the deny list hands out calls it
// (deny.go).
func (e *nodeEvents) Denied(what, entry string) {
	if e == nil {
		return
	}
	e.rec.Eventf(e.node, corev1.EventTypeWarning, ReasonDenied, "refused %s: denied by deny-list entry %q", what, entry)
}

// sweepHealed records what a sweep's fix did to one image.
func (e *nodeEvents) sweepHealed(img *heal.ImageReport) {
	if e == nil || img.Fix == nil {
		return
	}
	f := img.Fix
	switch {
	case f.Error != "":
		e.rec.Eventf(e.node, corev1.EventTypeWarning, ReasonHealFailed, "sweep: heal of %s failed: %s", img.Image, f.Error)
	case len(f.Left) > 0:
		e.rec.Eventf(e.node, corev1.EventTypeWarning, ReasonHealPartial,
			"sweep: partial heal of %s: %d nodes absent in the registry and on this node: %s; pushed %d (%d bytes)",
			img.Image, len(f.Left), absent(f.Left), len(f.Pushed), f.BytesPushed)
	case len(f.Pushed) > 0:
		e.rec.Eventf(e.node, corev1.EventTypeNormal, ReasonHealed, "sweep: healed %s: pushed %d blobs and manifests (%d bytes)",
			img.Image, len(f.Pushed), f.BytesPushed)
	}
}

// absent names the nodes a heal could not restore, at most five.
func absent(nodes []heal.NodeResult) string {
	var out []string
	for _, n := range nodes {
		if n.Status != heal.StatusUnhealable && n.Status != heal.StatusMissing && n.Status != "" {
			continue
		}
		if len(out) == 5 {
			out = append(out, "…")
			break
		}
		s := n.Kind + " " + n.Digest.String()
		if n.Reason != "" {
			s += " (" + n.Reason + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// servedBy marks, in a mirror request's context, that a peer served it.
type servedByKey struct{}

type servedBy struct{ peer bool }

// observeServed wraps the mirror's handler: a manifest or blob answered
// (GET, or HEAD: a pull of an image the node holds only resolves it) is a
// Served event.
func (e *nodeEvents) observeServed(next http.Handler) http.Handler {
	if e == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb := &servedBy{}
		rw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), servedByKey{}, sb)))
		if rw.status == 0 {
			rw.status = http.StatusOK // a HEAD answered with headers only
		}
		// HEAD counts: resolving a digest the node holds serves only that.
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || (rw.status != http.StatusOK && rw.status != http.StatusPartialContent) {
			return
		}
		if ref, ok := parseServed(r); ok {
			e.served(ref, sb.peer)
		}
	})
}

// peerFallback marks a request the peers served (observeServed reads it).
type peerFallback struct{ mirror.Fallback }

func (f peerFallback) ServeFallback(w http.ResponseWriter, r *http.Request, ref mirror.Ref) bool {
	ok := f.Fallback.ServeFallback(w, r, ref)
	if sb, _ := r.Context().Value(servedByKey{}).(*servedBy); ok && sb != nil {
		sb.peer = true
	}
	return ok
}

// parseServed reads registry and repository from a served
// /v2/<repo>/(manifests|blobs)/<digest>?ns=<registry> request.
func parseServed(r *http.Request) (mirror.Ref, bool) {
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	for _, kind := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(p, kind); i > 0 {
			return mirror.Ref{Registry: r.URL.Query().Get("ns"), Repository: p[:i], Kind: strings.Trim(kind, "/")}, true
		}
	}
	return mirror.Ref{}, false
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
