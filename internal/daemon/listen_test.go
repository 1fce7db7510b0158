package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
)

// clusterConfig is a cluster-mode config on port 0 everywhere, writing
// its addresses to addrFile.
func clusterConfig(t *testing.T, addrFile string) Config {
	t.Helper()
	token := filepath.Join(t.TempDir(), "peer-token")
	if err := os.WriteFile(token, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Registries, cfg.SweepInterval, cfg.HostsDir = []string{"edge:5000"}, 0, t.TempDir()
	cfg.Listen, cfg.MetricsListen, cfg.PeerListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.PeerTokenFile, cfg.AddrFile = token, addrFile
	return cfg
}

// runUntilAddrFile runs d and waits for its addr file.
func runUntilAddrFile(t *testing.T, d *Daemon, path string) Addrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("addr file %s still there after Run returned (%v)", path, err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var a Addrs
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatalf("addr file %q: %v", b, err)
			}
			return a
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before writing the addr file: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no addr file after 10s")
		}
	}
}

// TestPortZeroIsTheBoundPort: two daemons on port 0 report distinct bound
// addresses in their addr files, each serves there, and the node's peer
// identity is the bound peer address, not "127.0.0.1:0".
func TestPortZeroIsTheBoundPort(t *testing.T) {
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 2 {
		path := filepath.Join(t.TempDir(), "addrs.json")
		d, err := New(clusterConfig(t, path), Stores{Content: store, Images: noImages{}})
		if err != nil {
			t.Fatal(err)
		}
		a := runUntilAddrFile(t, d, path)
		if a != d.Addrs() {
			t.Errorf("daemon %d: addr file %+v, Addrs() %+v", i, a, d.Addrs())
		}
		for _, addr := range []string{a.Mirror, a.Metrics, a.Peer} {
			if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" || seen[addr] {
				t.Errorf("daemon %d: address %q: want a distinct bound port (%v)", i, addr, err)
			}
			seen[addr] = true
		}
		if self := d.cluster.members.Self(); self != a.Peer {
			t.Errorf("daemon %d: peer identity %q, want the bound %q", i, self, a.Peer)
		}
		resp, err := http.Get("http://" + a.Metrics + "/healthz")
		if err != nil {
			t.Fatalf("daemon %d: /healthz at the reported address: %v", i, err)
		}
		resp.Body.Close()
	}
}

// TestListenInheritedSocket: listen = "fd://N" serves on the socket the
// starting process opened, under that socket's address.
func TestListenInheritedSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(f.Fd())) // the daemon owns (and closes) fd
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := ln.Addr().String()
	ln.Close() // the daemon's duplicate keeps the socket open

	store, _ := local.NewStore(t.TempDir())
	path := filepath.Join(t.TempDir(), "addrs.json")
	cfg := clusterConfig(t, path)
	cfg.Listen = FDPrefix + strconv.Itoa(fd)
	d, err := New(cfg, Stores{Content: store, Images: noImages{}})
	if err != nil {
		t.Fatal(err)
	}
	if a := runUntilAddrFile(t, d, path); a.Mirror != want {
		t.Errorf("mirror at %q, want the inherited socket's %q", a.Mirror, want)
	}
	resp, err := http.Get("http://" + want + "/v2/")
	if err != nil {
		t.Fatalf("mirror on the inherited socket: %v", err)
	}
	resp.Body.Close()
}

func TestListenSettingsRefused(t *testing.T) {
	for _, s := range []string{"fd://x", "fd://1", "5050", "fd://"} {
		cfg := clusterConfig(t, "")
		cfg.Listen = s
		if _, err := New(cfg, Stores{}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), s) {
			t.Errorf("listen %q: %v, want an invalid-argument error naming it", s, err)
		}
	}
}
