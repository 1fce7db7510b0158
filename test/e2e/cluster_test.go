package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// writePeerToken writes a cluster token file, mode 0600, and returns its
// path and the token.
func writePeerToken(t *testing.T) (path, token string) {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	token = hex.EncodeToString(b)
	path = filepath.Join(t.TempDir(), "peer-token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, token
}

// peerURLs are the peer endpoint URLs of addrs.
func peerURLs(addrs ...string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "http://" + a
	}
	return out
}

// startPeerServe runs `regmend serve` in cluster mode: a peer endpoint on
// ln (opened beforehand when peers must name this node before it starts),
// or on port 0 if ln is nil, and the static peers (which may include this
// node's own URL: a node never counts itself). srv.Peer is the endpoint.
func startPeerServe(t *testing.T, node *harness.Containerd, reg *harness.Registry, ln *harness.Listener, tokenFile string, peers []string, extra ...string) *server {
	t.Helper()
	args := []string{"--peer-token-file", tokenFile}
	if ln == nil {
		args = append(args, "--peer-listen", "127.0.0.1:0")
	}
	for _, p := range peers {
		args = append(args, "--peer", p)
	}
	return harness.StartServe(t, harness.ServeSpec{Node: node, Registry: reg.Addr(), PeerListener: ln, Extra: append(args, extra...)})
}

// manifestPuts counts the PUTs of repo's manifest d in reqs.
func manifestPuts(reqs []harness.Request, repo string, d digest.Digest) int {
	n := 0
	for _, r := range reqs {
		if r.Method == http.MethodPut && strings.Contains(r.URI, "/v2/"+repo+"/manifests/"+d.String()) {
			n++
		}
	}
	return n
}

// assertHealedOnce checks that every blob of img was committed once and its
// manifest PUT once in reqs.
func assertHealedOnce(t *testing.T, reqs []harness.Request, repo string, img harness.PushedImage) {
	t.Helper()
	assertCommittedOnce(t, reqs, repo, img.Blobs())
	if n := manifestPuts(reqs, repo, img.Digest); n != 1 {
		t.Errorf("manifest %s PUT %d times, want once", img.Digest, n)
	}
}

func waitRetained(t *testing.T, reg *harness.Registry, repo string, d digest.Digest, within time.Duration) {
	t.Helper()
	waitFor(t, within, "registry healed (retention tag bound)", func() bool {
		got, ok := reg.TagDigest(repo, heal.RetentionTag(d))
		return ok && got == d
	})
}

// TestClusterFreshNodeServedFromPeer: node A holds an orphan, node C holds
// nothing; both run regmend with each other as peers. C's CRI pull of the
// orphan succeeds (served from A, verified), the registry is healed once,
// and node D, with no regmend, pulls it afterwards.
func TestClusterFreshNodeServedFromPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	nodeC := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeC"})
	nodeC.UseRegistry(s.reg)
	tokenFile, _ := writePeerToken(t)
	lnA, lnC := harness.Listen(t), harness.Listen(t) // A and C name each other
	addrs := []string{lnA.Addr(), lnC.Addr()}
	srvA := startPeerServe(t, s.nodeA, s.reg, lnA, tokenFile, peerURLs(addrs...))
	srvC := startPeerServe(t, nodeC, s.reg, lnC, tokenFile, peerURLs(addrs...))
	useMirror(ctx, t, s.nodeA, s.reg, srvA)
	useMirror(ctx, t, nodeC, s.reg, srvC)
	before := len(s.reg.Requests())

	ref := s.reg.Ref("app@" + s.d1.String())
	start := time.Now()
	mustPull(ctx, t, nodeC, ref)
	t.Logf("CRI pull on a node that lacks the orphan, served from a peer: %s", time.Since(start).Round(time.Millisecond))
	for _, d := range append(s.img.Blobs(), s.d1) {
		if !nodeC.HasContent(ctx, d) {
			t.Errorf("node C lacks %s after its pull", d)
		}
	}
	waitRetained(t, s.reg, "app", s.d1, 60*time.Second)
	assertHealedOnce(t, s.reg.Requests()[before:], "app", s.img)
	// A heal counts once it returns, after the tag is bound and what it
	// wrote is read back.
	var healedA, healedC float64
	waitFor(t, 30*time.Second, "a heal counted", func() bool {
		healedA, healedC = srvA.Metric(t, "regmend_heals_total", `result="healed"`), srvC.Metric(t, "regmend_heals_total", `result="healed"`)
		return healedA+healedC > 0
	})
	t.Logf("heals: node A %v, node C %v (C holds the image once its pull is done, so either may own it)", healedA, healedC)
	if (healedA > 0) == (healedC > 0) {
		t.Errorf("heals done: A %v, C %v, want one node only to heal", healedA, healedC)
	}
	if n := srvC.Metric(t, "regmend_mirror_requests_total", `outcome="served_by_peer"`); n < 3 {
		t.Errorf("node C's mirror served %v requests from a peer, want the manifest, config and layers", n)
	}
	if n := srvC.Metric(t, "regmend_peer_bytes_total", `direction="from_peers"`); n < 2*64<<10 {
		t.Errorf("bytes from peers = %v, want at least the two layers", n)
	}
	if n := srvA.Metric(t, "regmend_peer_bytes_total", `direction="to_peers"`); n < 2*64<<10 {
		t.Errorf("bytes to peers on A = %v", n)
	}
	assertRegistryIntact(t, s.reg, "app")

	nodeD := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeD"})
	nodeD.UseRegistry(s.reg)
	mustPull(ctx, t, nodeD, ref)
}

// TestClusterPeerEndpointRefusesWithoutToken: the peer endpoint answers 401
// and no content to a request without the cluster token or with a wrong
// one, and serves the holder's content with it.
func TestClusterPeerEndpointRefusesWithoutToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	tokenFile, token := writePeerToken(t)
	srv := startPeerServe(t, s.nodeA, s.reg, nil, tokenFile, nil)
	url := "http://" + srv.Peer + "/v2/app/manifests/" + s.d1.String() + "?ns=" + s.reg.Addr()
	for _, c := range []struct {
		name, auth string
		want       int
	}{
		{"none", "", 401},
		{"wrong", "Bearer " + strings.Repeat("0", len(token)), 401},
		{"token as basic", "Basic " + token, 401},
		{"token", "Bearer " + token, 200},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		served := digest.FromBytes(b) == s.d1
		if served != (c.want == 200) || (c.want == 401 && resp.Header.Get("Docker-Content-Digest") != "") {
			t.Errorf("%s: content served = %v (status %d)", c.name, served, resp.StatusCode)
		}
	}
	if n := srv.Metric(t, "regmend_peer_endpoint_refused_total"); n != 3 {
		t.Errorf("refusals counted %v, want 3", n)
	}
	if strings.Contains(srv.Proc.Log(), token) {
		t.Error("the peer token appears in serve's log")
	}
}

// TestClusterCorruptPeerNeverValid: node C's only peer is a proxy in front
// of A's peer endpoint that flips a byte in every layer it passes on. C's
// pull fails rather than take the bytes, C's store never holds the layer,
// and C counts the mismatch.
func TestClusterCorruptPeerNeverValid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	nodeC := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeC"})
	nodeC.UseRegistry(s.reg)
	tokenFile, _ := writePeerToken(t)
	srvA := startPeerServe(t, s.nodeA, s.reg, nil, tokenFile, nil)
	liar := startCorruptingProxy(t, "http://"+srvA.Peer)
	srvC := startPeerServe(t, nodeC, s.reg, nil, tokenFile, []string{liar})
	useMirror(ctx, t, nodeC, s.reg, srvC)

	pctx, pcancel := context.WithTimeout(ctx, 90*time.Second)
	defer pcancel()
	if out, err := nodeC.Pull(pctx, s.reg.Ref("app@"+s.d1.String())); err == nil {
		t.Fatalf("pull through a corrupting peer succeeded:\n%s", out)
	}
	for _, d := range s.img.Layers {
		if nodeC.HasContent(ctx, d) {
			t.Errorf("node C holds layer %s that only a corrupting peer served", d)
		}
	}
	if n := srvC.Metric(t, "regmend_peer_digest_mismatches_total"); n < 1 {
		t.Errorf("digest mismatches counted %v, want at least 1", n)
	}
}

// startCorruptingProxy forwards to target, flipping one byte in the middle
// of every blob body larger than 1 KiB (the layers; manifests and configs
// pass). It returns its URL.
func startCorruptingProxy(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // in-process: served right here
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), nil)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(r.URL.Path, "/blobs/") && len(b) > 1024 {
			b[len(b)/2] ^= 0xff
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if err := harness.WaitFor(5*time.Second, nil, "corrupting proxy", func() error {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// TestClusterPeersDownSingleNode: with every peer down, a node behaves as a
// single node: the pull of an orphan it holds is served and healed, and a
// node lacking an orphan gets "not found" at once.
func TestClusterPeersDownSingleNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	tokenFile, _ := writePeerToken(t)
	dead := peerURLs(deadPeer(t), deadPeer(t))
	srv := startPeerServe(t, s.nodeA, s.reg, nil, tokenFile, dead)
	useMirror(ctx, t, s.nodeA, s.reg, srv)
	s.pullHealsThroughMirror(ctx, t)

	nodeC := harness.StartContainerd(t, harness.ContainerdOptions{Name: "nodeC"})
	nodeC.UseRegistry(s.reg)
	srvC := startPeerServe(t, nodeC, s.reg, nil, tokenFile, dead)
	useMirror(ctx, t, nodeC, s.reg, srvC)
	d2 := reapAnother(ctx, t, s, "other")
	start := time.Now()
	mustFailPull(ctx, t, nodeC, s.reg.Ref("other@"+d2.String()))
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("pull with every peer down took %s; it must fail fast", took)
	}
	t.Logf("pull of a digest no live node holds: not found after %s", time.Since(start).Round(time.Millisecond))
	if n := srvC.Metric(t, "regmend_peer_requests_total", `outcome="hit"`); n != 0 {
		t.Errorf("hits from dead peers: %v", n)
	}
	_ = fmt.Sprint()
}

// deadPeer returns the address of a peer that is down: a socket of the
// test's own that resets every connection (it stays bound, so no other
// process can take the address).
func deadPeer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	return ln.Addr().String()
}
