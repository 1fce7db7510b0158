package daemon

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// EventsAPI is what regmend's Events need of the API server: its Node, for
// the reference, and the event sink of client-go's recorder.
type EventsAPI interface {
	record.EventSink
	GetNode(ctx context.Context, name string) (*corev1.Node, error)
}

// apiTimeout bounds each event write; the recorder retries on its own.
const apiTimeout = 10 * time.Second

// coreAPI is EventsAPI over a REST client for core/v1 alone. client-go's
// clientset (or even its typed core/v1 client, through the scheme of every
// API group it registers) would more than double regmend's binary.
type coreAPI struct{ c rest.Interface }

func newCoreAPI(cfg *rest.Config) (*coreAPI, error) {
	sch := runtime.NewScheme()
	if err := corev1.AddToScheme(sch); err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath, cfg.GroupVersion = "/api", &corev1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(sch).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = EventsComponent
	}
	c, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &coreAPI{c: c}, nil
}

func (a *coreAPI) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	n := &corev1.Node{}
	return n, a.c.Get().Resource("nodes").Name(name).Do(ctx).Into(n)
}

func (a *coreAPI) Create(e *corev1.Event) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	out := &corev1.Event{}
	return out, a.c.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(ctx).Into(out)
}

func (a *coreAPI) Update(e *corev1.Event) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	out := &corev1.Event{}
	return out, a.c.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(ctx).Into(out)
}

func (a *coreAPI) Patch(old *corev1.Event, data []byte) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	out := &corev1.Event{}
	return out, a.c.Patch(types.StrategicMergePatchType).Namespace(old.Namespace).Resource("events").Name(old.Name).Body(data).Do(ctx).Into(out)
}
