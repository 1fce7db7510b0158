package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeT records what the harness reports, so a test can assert that a
// failure is reported (and how) without failing itself.
type fakeT struct {
	testing.TB
	errs []string
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.errs = append(f.errs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// TestProcDeathFailsAtOnce: a server that dies at start (here regmend
// serve whose metrics port another socket holds, as in issue 17) fails the
// test at once, naming the process, its exit status and its log, and a
// wait on it ends at once rather than at its timeout.
func TestProcDeathFailsAtOnce(t *testing.T) {
	bin := ProductBinary(t, "regmend")
	node := StartContainerd(t, ContainerdOptions{Name: "node", LogLevel: "info"})
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	ft := &fakeT{TB: t}
	p := StartProc(ft, ProcSpec{Name: "regmend-serve", Path: bin, Args: []string{
		"-a", node.Socket(), "-n", node.Namespace(), "--hosts-dir", node.HostsDir(),
		"serve", "--listen", "127.0.0.1:0", "--metrics-listen", held.Addr().String(), "--registry", "edge:5000", "--sweep-interval", "0",
	}})
	start := time.Now()
	err = WaitFor(time.Minute, p, "regmend /healthz", func() error { return errors.New("not up") })
	if !errors.Is(err, ErrExited) {
		t.Fatalf("WaitFor on a process that died: %v, want ErrExited", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("WaitFor took %s to see the death (timeout 1m)", took)
	}
	if !strings.Contains(err.Error(), "regmend-serve") || !strings.Contains(err.Error(), p.LogPath()) {
		t.Errorf("WaitFor's error does not name the process and its log: %v", err)
	}
	<-p.Done()
	if len(ft.errs) != 1 {
		t.Fatalf("test failures reported: %q, want one", ft.errs)
	}
	msg := ft.errs[0]
	t.Logf("the failure reported:\n%s", msg)
	for _, want := range []string{"regmend-serve", "exited before the harness stopped it", "exit status", p.LogPath(), "address already in use"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure does not say %q:\n%s", want, msg)
		}
	}
}

// TestProcStoppedIsNoFailure: a process the harness stops, or the test
// signals, fails nothing.
func TestProcStoppedIsNoFailure(t *testing.T) {
	ft := &fakeT{TB: t}
	p := StartProc(ft, ProcSpec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"60"}})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	q := StartProc(ft, ProcSpec{Name: "sleeper2", Path: "/bin/sleep", Args: []string{"60"}})
	if err := q.Signal(9); err != nil {
		t.Fatal(err)
	}
	<-q.Done()
	if len(ft.errs) != 0 {
		t.Errorf("failures reported for stopped processes: %q", ft.errs)
	}
}

// TestServesBindPortZero: two regmend serves on one node, both on port 0,
// report distinct bound addresses and answer there; a peer endpoint
// handed over as a Listener serves on its address.
func TestServesBindPortZero(t *testing.T) {
	node := StartContainerd(t, ContainerdOptions{Name: "node", LogLevel: "info"})
	token := filepath.Join(t.TempDir(), "peer-token")
	if err := os.WriteFile(token, []byte(strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln := Listen(t)
	a := StartServe(t, ServeSpec{Node: node, Registry: "edge:5000", Name: "serve-a"})
	b := StartServe(t, ServeSpec{Node: node, Registry: "edge:5000", Name: "serve-b", PeerListener: ln, Extra: []string{"--peer-token-file", token}})
	seen := map[string]string{}
	for _, addr := range []string{a.Mirror, a.Metrics, b.Mirror, b.Metrics} {
		if strings.HasSuffix(addr, ":0") || seen[addr] != "" {
			t.Errorf("address %s: want a distinct bound port (seen %v)", addr, seen)
		}
		seen[addr] = addr
	}
	if b.Peer != ln.Addr() {
		t.Errorf("peer endpoint at %q, want the listener handed over, %q", b.Peer, ln.Addr())
	}
	c, err := net.DialTimeout("tcp", b.Peer, time.Second)
	if err != nil {
		t.Fatalf("peer endpoint: %v", err)
	}
	c.Close()
}

// TestRegistryKeepsItsAddress: the registry binds port 0 on each start;
// its address (the front) answers across a restart.
func TestRegistryKeepsItsAddress(t *testing.T) {
	r := StartRegistry(t, RegistryOptions{})
	addr := r.Addr()
	img := PushImage(context.Background(), t, r.Ref("app:v1"), ImageSpec{Layers: 1, LayerSize: 1024})
	r.GarbageCollect()
	if !r.ManifestExists("app", img.Digest) {
		t.Errorf("after the restart, %s does not hold app:v1", addr)
	}
	if r.Addr() != addr {
		t.Fatalf("address changed across a restart: %s, then %s", addr, r.Addr())
	}
	if len(r.Requests()) != 0 {
		t.Error("requests logged that the harness did not send")
	}
	r.Stop()
	if resp, err := r.client.Get(r.URL() + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("stopped registry answered %s", resp.Status)
	}
}
