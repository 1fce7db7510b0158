package registry_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
)

// TestPushHostIsToldTheRegistry: when the registry's push host is another
// host (hosts.toml's server), every request names the registry in ?ns=,
// the presence and tag HEADs as the writes, as containerd asks such a host.
func TestPushHostIsToldTheRegistry(t *testing.T) {
	const name = "edge.test:5000"
	reg := imagetest.NewRegistry(t)
	var mu sync.Mutex
	var seen, missing []string
	reg.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Method)
		if r.URL.Query().Get("ns") != name {
			missing = append(missing, r.Method+" "+r.URL.String())
		}
		return false
	})
	h := hostOf(reg.Host, "http")
	h.Client = &http.Client{Transport: freshTransport(t)}
	s := session(t, newRemote(t, oneHost(h), 1), name, "app")

	cs, _ := imagetest.LocalStore(t)
	m := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 64)
	imagetest.WriteLocal(t, cs, name, "app", m)
	ctx := t.Context()
	for _, b := range append(m.Layers, *m.Config) {
		if ok, err := s.Exists(ctx, b.Desc, false); ok || err != nil {
			t.Fatalf("blob HEAD before upload: %v, %v", ok, err)
		}
		if _, err := s.Upload(ctx, b.Desc, opener(ctx, cs, b.Desc)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutManifest(ctx, "v1", m.Desc, opener(ctx, cs, m.Desc)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(ctx, m.Desc, true); !ok || err != nil {
		t.Fatalf("manifest HEAD: %v, %v", ok, err)
	}
	if d, ok, err := s.TagDigest(ctx, "v1"); d != m.Desc.Digest || !ok || err != nil {
		t.Fatalf("tag HEAD: %v %v %v, want %s", d, ok, err, m.Desc.Digest)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("requests: %v", seen)
	for _, r := range missing {
		t.Errorf("request without ns=%s: %s", name, r)
	}
}

// TestRegistryHostsOption: hosts given in code stand instead of a hosts
// directory, not beside one, and regmend's own address is still never
// asked.
func TestRegistryHostsOption(t *testing.T) {
	hosts := oneHost(hostOf("127.0.0.1:5000", "http"))
	for _, opt := range []registry.Option{registry.WithHostsDir(t.TempDir()), registry.WithAuthFile("/nonexistent/config.json")} {
		if _, err := registry.NewRemote(registry.WithRegistryHosts(hosts), opt); !errdefs.IsInvalidArgument(err) {
			t.Errorf("hosts in code with a hosts directory or auth file: %v, want invalid argument", err)
		}
	}
	if _, err := registry.NewRemote(registry.WithRegistryHosts(nil)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("nil hosts: %v, want invalid argument", err)
	}
	for _, h := range []docker.RegistryHost{hostOf("127.0.0.1:5000", ""), hostOf("127.0.0.1:5000", "ftp"), hostOf("", "https")} {
		r, err := registry.NewRemote(registry.WithRegistryHosts(oneHost(h)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Session(t.Context(), "edge:5000", "app"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "edge:5000") {
			t.Errorf("push host %q scheme %q: %v, want invalid argument naming the registry", h.Host, h.Scheme, err)
		}
	}
	r, err := registry.NewRemote(registry.WithRegistryHosts(hosts), registry.WithExcludedHost("127.0.0.1:5000"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Session(t.Context(), "edge:5000", "app"); !errdefs.IsNotFound(err) {
		t.Errorf("session whose only host is regmend's own: %v, want not found", err)
	}
}
