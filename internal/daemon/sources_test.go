package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/source"
)

// upstreamCase is an orphan in the edge registry whose layers this node
// discarded after unpack (it holds the manifest and config), and an
// upstream registry holding the whole image in repository "app".
type upstreamCase struct {
	edge, up *imagetest.Registry
	cs       ctrcontent.Store
	images   *imageList
	m1       *imagetest.Object
}

func newUpstreamCase(t *testing.T) *upstreamCase {
	t.Helper()
	c := &upstreamCase{edge: imagetest.NewRegistry(t), up: imagetest.NewRegistry(t), images: &imageList{}}
	c.cs, _ = imagetest.LocalStore(t)
	c.m1, _ = imagetest.Orphan(t, c.cs, c.edge, "app", imagetest.OCI)
	for _, l := range c.m1.Layers {
		if err := c.cs.Delete(context.Background(), l.Desc.Digest); err != nil {
			t.Fatal(err)
		}
	}
	c.images.add(c.edge.Host+"/app:v1", c.m1)
	imagetest.Push(t, c.up.Base, "app", "", c.m1)
	// One hosts directory names both registries, as on a node.
	imagetest.WriteHostsTOML(t, c.edge.HostsDir, c.up.Host, fmt.Sprintf("server = %q\n", c.up.Base))
	c.edge.Log.Reset()
	c.up.Log.Reset()
	return c
}

// daemon builds a daemon healing the edge registry, reading sources after
// the node's store.
func (c *upstreamCase) daemon(t *testing.T, sources ...string) *Daemon {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Registries, cfg.HostsDir, cfg.Listen, cfg.MetricsListen = []string{c.edge.Host}, c.edge.HostsDir, "127.0.0.1:0", ""
	cfg.SweepInterval, cfg.ContainerdConfig, cfg.Sources = 0, "", sources
	d, err := New(cfg, Stores{Content: c.cs, Images: c.images})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func (c *upstreamCase) sweep(t *testing.T, d *Daemon) heal.ImageReport {
	t.Helper()
	rep := d.SweepOnce(namespaces.WithNamespace(context.Background(), d.cfg.Namespace))
	if rep == nil || len(rep.Images) != 1 {
		t.Fatalf("sweep report %+v, want the one image", rep)
	}
	return rep.Images[0]
}

func (c *upstreamCase) layersAtEdge(t *testing.T) int {
	n := 0
	for _, l := range c.m1.Layers {
		if imagetest.Has(t, c.edge.Base, "app", "blobs", l.Desc.Digest.String()) {
			n++
		}
	}
	return n
}

// TestSweepHealsFromUpstreamSource: the layers the node lacks are read
// from the configured upstream, the last source, so the sweep restores
// the whole image; without the source it cannot. The upstream is only
// read, and the mirror still serves only the node's store.
func TestSweepHealsFromUpstreamSource(t *testing.T) {
	c := newUpstreamCase(t)
	if img := c.sweep(t, c.daemon(t)); img.State != heal.StateBroken || c.layersAtEdge(t) != 0 {
		t.Fatalf("without sources: %s, %d layers at the edge; want broken, none", img.State, c.layersAtEdge(t))
	}

	d := c.daemon(t, c.up.Host+"/app")
	img := c.sweep(t, d)
	if img.State != heal.StateHealthy || img.Fix == nil || img.Fix.Error != "" {
		t.Fatalf("with the upstream: %s, fix %+v; want healed", img.State, img.Fix)
	}
	for _, b := range c.m1.Blobs() {
		kind := "blobs"
		if b.Desc.Digest == c.m1.Desc.Digest {
			kind = "manifests"
		}
		if !imagetest.Has(t, c.edge.Base, "app", kind, b.Desc.Digest.String()) {
			t.Errorf("%s %s not at the edge", kind, b.Desc.Digest)
		}
	}
	reads := 0
	for _, r := range c.up.Log.All() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			t.Errorf("upstream got %s %s: a source is only read", r.Method, r.Path)
		}
		if strings.Contains(r.Path, c.m1.Layers[0].Desc.Digest.String()) {
			reads++
		}
	}
	if reads == 0 {
		t.Error("the upstream was never asked for the layer the edge gained")
	}

	layer := c.m1.Layers[0].Desc.Digest.String()
	rec := httptest.NewRecorder()
	d.Mirror().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/app/blobs/"+layer+"?ns="+c.edge.Host, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("mirror GET of a layer only the upstream holds = %d, want 404: the mirror serves the node's store alone", rec.Code)
	}
}

// TestSweepHealsOnWhenSourceFails: an upstream that refuses (expired
// credentials) counts as not holding the layers: the heal pushes what the
// node holds and reports the rest, as without the source, and does not
// fail.
func TestSweepHealsOnWhenSourceFails(t *testing.T) {
	c := newUpstreamCase(t)
	c.up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusForbidden)
		return true
	})
	img := c.sweep(t, c.daemon(t, c.up.Host+"/app"))
	if img.State != heal.StateBroken || img.Fix == nil || img.Fix.Error != "" {
		t.Fatalf("upstream refusing: %s, fix %+v; want broken, the fix not failed", img.State, img.Fix)
	}
	if !imagetest.Has(t, c.edge.Base, "app", "blobs", c.m1.Config.Desc.Digest.String()) {
		t.Error("the config the node holds was not pushed")
	}
	if len(c.up.Log.All()) == 0 {
		t.Error("the upstream was never asked")
	}
}

func TestSourcesValidated(t *testing.T) {
	for _, c := range []struct {
		sources []string
		want    string
	}{
		{[]string{"oci:"}, "no directory"},
		{[]string{"app"}, `sources[0] "app"`},
		{[]string{"edge:5000/app", "edge:5000/app:v1"}, `sources[1] "edge:5000/app:v1"`},
		{[]string{"edge:5000/app@sha256:" + strings.Repeat("a", 64)}, "by digest"},
	} {
		cfg := DefaultConfig()
		cfg.Sources = c.sources
		if err := cfg.Validate(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("sources %q: Validate() = %v, want invalid argument naming %s", c.sources, err, c.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Registries, cfg.Listen, cfg.MetricsListen = []string{"edge:5000"}, "127.0.0.1:0", ""
	cfg.Sources = []string{"oci:" + t.TempDir()}
	if d, err := New(cfg, Stores{}); err == nil || !strings.Contains(err.Error(), "sources[0]") {
		if d != nil {
			d.Close()
		}
		t.Errorf("New with a directory that is no layout = %v, want an error naming sources[0]", err)
	}
	cfg, err := DecodeConfig([]byte(`registries = ["edge:5000"]` + "\n" + `sources = ["edge-upstream:5000/app", "oci:/srv/images"]` + "\n"))
	if err != nil || len(cfg.Sources) != 2 || cfg.Sources[0] != "edge-upstream:5000/app" || cfg.Sources[1] != "oci:/srv/images" {
		t.Fatalf("decode sources = %q, %v", cfg.Sources, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid sources refused: %v", err)
	}
}

// TestLastResortSkipsDownSource: a source that fails is taken as absent
// and then skipped for 30 s, logged once however many heals ask at once;
// after that it is asked again. A cancelled caller gets its own error, not
// absence, and does not take the source down.
func TestLastResortSkipsDownSource(t *testing.T) {
	up := imagetest.NewRegistry(t)
	up.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	remote, err := registry.NewRemote(registry.WithHostsDir(up.HostsDir), registry.WithRetry(2, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.NewRegistry(context.Background(), remote, up.Host, "app")
	if err != nil {
		t.Fatal(err)
	}
	var buf imagetest.SyncBuffer
	logger := logrus.New()
	logger.SetOutput(&buf)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))
	now := time.Unix(1_000_000, 0)
	l := newLastResort(src)
	var mu sync.Mutex
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Info(cancelled, digest.FromString("x")); !errors.Is(err, context.Canceled) || errdefs.IsNotFound(err) {
		t.Errorf("Info with the caller cancelled = %v, want context.Canceled, not absence", err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.Info(ctx, digest.FromString(fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if !errdefs.IsNotFound(err) {
			t.Errorf("Info %d from a source answering 503 = %v, want taken as absent", i, err)
		}
	}
	if n := strings.Count(buf.String(), "heal source did not answer"); n != 1 {
		t.Errorf("%d warnings for one source down, want 1:\n%s", n, buf.String())
	}
	asked := len(up.Log.All())
	if asked == 0 {
		t.Fatal("the source was never asked")
	}
	for i := range 5 {
		if _, err := l.Info(ctx, digest.FromString(fmt.Sprint("later", i))); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "skipped") {
			t.Errorf("Info while the source is down = %v, want absent, skipped", err)
		}
	}
	if n := len(up.Log.All()); n != asked {
		t.Errorf("the source was asked %d more times while down, want none", n-asked)
	}

	mu.Lock()
	now = now.Add(sourceDownFor)
	mu.Unlock()
	if _, err := l.Info(ctx, digest.FromString("after")); !errdefs.IsNotFound(err) || strings.Contains(err.Error(), "skipped") {
		t.Errorf("Info once the 30 s are over = %v, want the source asked again", err)
	}
	if len(up.Log.All()) == asked {
		t.Error("the source was not asked again after 30 s")
	}
	if n := strings.Count(buf.String(), "heal source did not answer"); n != 2 {
		t.Errorf("%d warnings after it failed again, want 2", n)
	}
}
