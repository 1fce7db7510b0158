package resolver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/plugins/content/local"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
)

// A Go program that pulls with containerd's client wraps its resolver so a
// digest the registry lost, but this node holds, still resolves, and the
// registry is healed on the way.
func ExampleHealingResolver() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "regmend-example")
	defer os.RemoveAll(dir)

	// An empty registry: it lost the image.
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	edge := strings.TrimPrefix(srv.URL, "http://")
	hostsDir := filepath.Join(dir, "certs.d")
	os.MkdirAll(filepath.Join(hostsDir, edge), 0o755)
	os.WriteFile(filepath.Join(hostsDir, edge, "hosts.toml"), []byte(`server = "`+srv.URL+`"`), 0o644)

	// This node's content store still holds it, pulled from edge/app.
	store, _ := local.NewLabeledStore(filepath.Join(dir, "content"), labels{})
	manifest := writeImage(ctx, store, map[string]string{content.SourceLabelPrefix + content.SourceHost(edge): "app"})

	// containerd's docker resolver, wrapped.
	inner := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(hostsDir)}),
	})
	remote, _ := registry.NewRemote(registry.WithHostsDir(hostsDir), registry.WithRegistries(edge))
	healer, _ := heal.NewHealer(store, remote)
	r := resolver.NewHealingResolver(inner, healer, content.Local{Store: store, Blobs: store})

	_, desc, err := r.Resolve(ctx, edge+"/app@"+manifest.String())
	fmt.Println("resolved:", err == nil && desc.Digest == manifest)

	resp, _ := http.Head(srv.URL + "/v2/app/manifests/" + manifest.String())
	fmt.Println("registry healed:", resp.StatusCode == http.StatusOK)
	// Output:
	// resolved: true
	// registry healed: true
}

// writeImage stores a one-layer image, each blob with the source labels
// containerd's pull sets, and returns its manifest digest.
func writeImage(ctx context.Context, store ctrcontent.Store, source map[string]string) digest.Digest {
	put := func(mt string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		ctrcontent.WriteBlob(ctx, store, d.Digest.String(), bytes.NewReader(b), d, ctrcontent.WithLabels(source))
		return d
	}
	layer := put(ocispec.MediaTypeImageLayer, []byte("a layer"))
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	m, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: put(ocispec.MediaTypeImageConfig, cfg), Layers: []ocispec.Descriptor{layer},
	})
	return put(ocispec.MediaTypeImageManifest, m).Digest
}

// labels keeps the local store's blob labels in memory, as containerd's
// metadata database keeps them for its store.
type labels map[digest.Digest]map[string]string

func (l labels) Get(d digest.Digest) (map[string]string, error) { return l[d], nil }

func (l labels) Set(d digest.Digest, m map[string]string) error { l[d] = m; return nil }

func (l labels) Update(d digest.Digest, m map[string]string) (map[string]string, error) {
	if l[d] == nil {
		l[d] = map[string]string{}
	}
	for k, v := range m {
		if v == "" {
			delete(l[d], k)
		} else {
			l[d][k] = v
		}
	}
	return l[d], nil
}
