package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

// startPeerServe runs `regmend serve` in cluster mode against node: a peer
// endpoint on peerAddr (if set) and the given peers.
func startPeerServe(t *testing.T, node *harness.Containerd, reg *harness.Registry, peerLn *harness.Listener, tokenFile string, peers ...string) *harness.Server {
	t.Helper()
	args := []string{"--peer-token-file", tokenFile}
	for _, p := range peers {
		args = append(args, "--peer", p)
	}
	return harness.StartServe(t, harness.ServeSpec{Node: node, Registry: reg.Addr(), LogLevel: "info", PeerListener: peerLn, Extra: args})
}

// benchPeer: a CRI pull of a reaped digest on a node that lacks it, served
// by its regmend from a peer (node A) that holds it, against a pull from a
// healthy registry.
func benchPeer(ctx context.Context, t *testing.T, rep *report) {
	reg := harness.StartRegistry(t, harness.RegistryOptions{Name: "registry"})
	nodeA := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeA", LogLevel: "info"})
	nodeA.UseRegistry(reg)
	const repo = "peer"
	img := harness.PushImage(ctx, t, reg.Ref(repo+":v1"), harness.ImageSpec{Layers: pullLayers, LayerSize: pullLayerSize})
	if out, err := nodeA.Pull(ctx, reg.Ref(repo+":v1")); err != nil {
		t.Fatalf("node A pull: %v\n%s", err, out)
	}
	ref := reg.Ref(repo + "@" + img.Digest.String())
	blobs := img.Blobs()
	b := make([]byte, 32)
	rand.Read(b)
	tokenFile := filepath.Join(t.TempDir(), "peer-token")
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString(b)), 0o600); err != nil {
		t.Fatal(err)
	}

	var plain, fromPeer, heals durations
	for i := range *benchRuns {
		t.Run(fmt.Sprintf("run%d", i+1), func(t *testing.T) {
			// A fresh serve on A each run: its heal queue otherwise skips
			// a digest it healed a moment ago.
			srvA := startPeerServe(t, nodeA, reg, harness.Listen(t), tokenFile)
			plain = append(plain, pullFresh(ctx, t, reg, ref))
			reap(t, reg, repo, img.Digest, blobs)

			node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "fresh", LogLevel: "info"})
			srv := startPeerServe(t, node, reg, nil, tokenFile, "http://"+srvA.Peer)
			node.UseRegistry(reg, harness.HostEntry(srv.Mirror, "pull", "resolve"))
			syscall.Sync()
			settle(pidOf(t, node.ConfigPath()))
			start := time.Now()
			if out, err := node.Pull(ctx, ref); err != nil {
				t.Fatalf("pull %s from a peer: %v\n%s", ref, err, out)
			}
			fromPeer = append(fromPeer, time.Since(start))
			heals = append(heals, waitHealed(t, reg, repo, img.Digest, blobs).Sub(start))
			if mirrorRequests(t, srv, "served_by_peer") == 0 || mirrorRequests(t, srvA, "") != 0 {
				t.Fatalf("the fresh node's mirror served %v requests from a peer; node A's containerd-facing mirror %v (want >0 and 0)",
					mirrorRequests(t, srv, "served_by_peer"), mirrorRequests(t, srvA, ""))
			}
			node.Stop()
		})
	}
	rep.add(section{
		title: "5. Cluster mode: a reaped digest served from a peer",
		intro: fmt.Sprintf("`crictl pull REG/%s@DIGEST` of one image (%d layers × %d MiB) on a fresh containerd per pull, as in section 3. "+
			"Healthy: the registry holds the image. From a peer: the registry lost the manifest and its blobs (`DELETE`); the fresh node holds nothing, and its own `regmend serve` "+
			"(listed after the registry in its hosts.toml) fetches every manifest and blob from node A's peer endpoint (a second `regmend serve`, bearer token, plain HTTP on loopback), "+
			"verifying each digest before the last bytes are passed on. Node A heals the registry in the background; it is reaped again before every run.", repo, pullLayers, pullLayerSize>>20),
		header: []string{"pull", "time", "ratio"},
		rows: [][]string{
			{"healthy registry", plain.String(), "1.00x (baseline)"},
			{"reaped digest, served from a peer", fromPeer.String(), ratio(fromPeer.median(), plain.median())},
			{"… pull start until the registry holds it again (healed by the peer)", heals.String(), ratio(heals.median(), plain.median())},
		},
	})
	rep.claim("CRI pull of a reaped digest served from a peer, vs the same pull from a healthy registry", secs(fromPeer.median()), secs(plain.median()),
		ratio(fromPeer.median(), plain.median()), "≤ 1.50x", float64(fromPeer.median()) <= 1.5*float64(plain.median()))
}
