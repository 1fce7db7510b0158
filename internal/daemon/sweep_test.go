package daemon

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
)

// imageList is containerd's image records as the test sets them.
type imageList struct {
	mu  sync.Mutex
	all []images.Image
}

func (l *imageList) List(context.Context, ...string) ([]images.Image, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]images.Image(nil), l.all...), nil
}

func (l *imageList) add(name string, o *imagetest.Object) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, images.Image{Name: name, Target: o.Root()})
}

// stuckSweep is a daemon whose registry never answers a write to
// repository "stuck" (held until the test ends), holding an orphan there.
type stuckSweep struct {
	d      *Daemon
	reg    *imagetest.Registry
	images *imageList
	stuck  *imagetest.Object
	cs     ctrcontent.Store
	held   atomic.Int32 // writes to "stuck" held
}

func newStuckSweep(t *testing.T, interval time.Duration) *stuckSweep {
	t.Helper()
	s := &stuckSweep{reg: imagetest.NewRegistry(t), images: &imageList{}}
	s.cs, _ = imagetest.LocalStore(t)
	s.stuck, _ = imagetest.Orphan(t, s.cs, s.reg, "stuck", imagetest.OCI)
	s.images.add(s.reg.Host+"/stuck:v1", s.stuck)
	unblock := make(chan struct{})
	t.Cleanup(func() { close(unblock) }) // before the registry closes
	s.reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/v2/stuck/") && r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.held.Add(1)
			<-unblock
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	cfg := DefaultConfig()
	cfg.Registries, cfg.HostsDir, cfg.Listen, cfg.MetricsListen = []string{s.reg.Host}, s.reg.HostsDir, "127.0.0.1:0", ""
	cfg.SweepInterval = Duration(interval)
	var err error
	if s.d, err = New(cfg, Stores{Content: s.cs, Images: s.images}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStuckHealDoesNotStopLaterSweeps: a sweep's heal that never ends (the
// registry holds its upload) does not stop the sweeps after it: an image
// that appears later is healed by the next sweep.
func TestStuckHealDoesNotStopLaterSweeps(t *testing.T) {
	s := newStuckSweep(t, 300*time.Millisecond)
	later, _ := imagetest.Orphan(t, s.cs, s.reg, "later", imagetest.OCI)
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), s.d.cfg.Namespace))
	done := make(chan struct{})
	go func() { s.d.sweep(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	imagetest.WaitUntil(t, 5*time.Second, "the stuck image's heal held by the registry", func() bool { return s.held.Load() > 0 })
	s.images.add(s.reg.Host+"/later:v1", later)
	imagetest.WaitUntil(t, 5*time.Second, "the later image healed by a later sweep", func() bool {
		return imagetest.Has(t, s.reg.Base, "later", "manifests", later.Desc.Digest.String())
	})
	// One heal uploads the stuck image's blobs at once, each held; a second
	// heal of it would upload them again.
	if n, blobs := int(s.held.Load()), len(s.stuck.Layers)+1; n != blobs {
		t.Errorf("%d uploads to the stuck repository, want %d (one heal): later sweeps leave an image in flight to the sweep healing it", n, blobs)
	}
}

// TestSweepHealHasDeadline: a sweep's heal that does not end within the
// sweep's heal timeout is given up and reported as a failed fix; the sweep
// ends.
func TestSweepHealHasDeadline(t *testing.T) {
	s := newStuckSweep(t, 0)
	const timeout = 300 * time.Millisecond
	s.d.sweeps.healTimeout = timeout
	ctx := namespaces.WithNamespace(context.Background(), s.d.cfg.Namespace)
	start := time.Now()
	rep := s.d.SweepOnce(ctx)
	if took := time.Since(start); took > timeout+5*time.Second {
		t.Errorf("the sweep took %s with a heal timeout of %s", took, timeout)
	}
	if rep == nil || len(rep.Images) != 1 {
		t.Fatalf("report %+v, want the stuck image", rep)
	}
	img := rep.Images[0]
	if img.Fix == nil || !strings.Contains(img.Fix.Error, "deadline") || img.State != heal.StateHealable {
		t.Errorf("stuck image: %s, fix %+v; want a fix that failed at its deadline, the image still healable", img.State, img.Fix)
	}
	if s.d.sweeps.claim([]heal.Target{img.Target}) == nil {
		t.Error("the timed-out image is still marked in flight")
	}
}
