package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
)

func TestMain(m *testing.M) { imagetest.Main(m) }

// allCaps is what hosts.toml gives a `server` or a host without
// capabilities: pull, resolve and push.
const allCaps = docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush

// counted is an http.Client whose requests are counted as they reach the
// network (each try of a retry is one).
type counted struct {
	*http.Client
	n atomic.Int64
}

func newCounted(next http.RoundTripper) *counted {
	c := &counted{}
	c.Client = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.n.Add(1)
		return next.RoundTrip(r)
	})}
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// freshTransport is a transport of its own per test, closed when it ends, so
// no connection outlives the test's servers.
func freshTransport(t testing.TB) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// oneHost answers every registry with one host, as hosts.toml with a
// single `server` would.
func oneHost(h docker.RegistryHost) docker.RegistryHosts {
	if h.Path == "" {
		h.Path = "/v2"
	}
	if h.Capabilities == 0 {
		h.Capabilities = allCaps
	}
	return func(string) ([]docker.RegistryHost, error) { return []docker.RegistryHost{h}, nil }
}

// newRemote is a Remote configured in code (no hosts directory), trying
// each request at most attempts times, 1ms apart.
func newRemote(t testing.TB, hosts docker.RegistryHosts, attempts int, opts ...registry.Option) *registry.Remote {
	t.Helper()
	r, err := registry.NewRemote(append([]registry.Option{registry.WithRegistryHosts(hosts), registry.WithRetry(attempts, time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// plainRegistry is go-containerregistry's in-memory registry on loopback
// (imagetest.Registry: request log, faults), reached over plain HTTP as
// containerd's default hosts reach a localhost registry.
func plainRegistry(t testing.TB, attempts int, opts ...registry.Option) (*imagetest.Registry, *registry.Remote) {
	t.Helper()
	reg := imagetest.NewRegistry(t)
	hosts := docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost), docker.WithClient(&http.Client{Transport: freshTransport(t)}))
	return reg, newRemote(t, hosts, attempts, opts...)
}

func session(t testing.TB, r *registry.Remote, reg, repo string) *registry.Session {
	t.Helper()
	s, err := r.Session(t.Context(), reg, repo)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// localBlob writes size random bytes into a real containerd content store
// and returns the store and the blob's descriptor.
func localBlob(t testing.TB, size int) (ctrcontent.Store, string, ocispec.Descriptor) {
	t.Helper()
	cs, root := imagetest.LocalStore(t)
	b := make([]byte, size)
	rand.Read(b)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(size)}
	if err := ctrcontent.WriteBlob(context.Background(), cs, desc.Digest.String(), bytes.NewReader(b), desc); err != nil {
		t.Fatal(err)
	}
	return cs, root, desc
}

// opener reads desc from p as the heal does.
func opener(ctx context.Context, p ctrcontent.Provider, desc ocispec.Descriptor) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return content.Open(ctx, p, desc) }
}

// quietServer starts h on a loopback server (TLS when tls is set) whose
// error log is printed only when the test fails.
func quietServer(t testing.TB, h http.Handler, tls bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	var logs imagetest.SyncBuffer
	srv.Config.ErrorLog = stdlog.New(&logs, "", 0)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() && logs.String() != "" {
			t.Logf("server %s log:\n%s", srv.URL, logs.String())
		}
	})
	return srv
}
