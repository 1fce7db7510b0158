package harness

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regmend/regmend/internal/daemon"
)

// No test picks a "free" port and hands its number to another process:
// between the check and the bind, anything may take it. A process the
// harness starts either binds port 0 and reports what it bound (regmend's
// --addr-file, the registry's "listening on" line), or is handed a socket
// the harness opened (Listener), when its address must be known before it
// starts (peers naming each other).

// Listener is a loopback socket, listening on a port the kernel chose, to
// be handed open to one process the harness starts (ProcSpec.Listeners).
// Its address never becomes free in between.
type Listener struct {
	addr string
	mu   sync.Mutex
	file *os.File
}

// Listen opens a Listener on 127.0.0.1:0. Until it is handed on, it queues
// connections and answers none; an untaken Listener is closed on cleanup.
func Listen(t testing.TB) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close() // the file below is a duplicate of the socket
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatalf("listener file: %v", err)
	}
	l := &Listener{addr: ln.Addr().String(), file: f}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.file != nil {
			l.file.Close()
		}
	})
	return l
}

// Addr returns "127.0.0.1:PORT".
func (l *Listener) Addr() string { return l.addr }

// URL returns "http://127.0.0.1:PORT".
func (l *Listener) URL() string { return "http://" + l.addr }

// take hands the socket over; a Listener is handed on once.
func (l *Listener) take(t testing.TB) *os.File {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		t.Fatalf("listener %s was already handed to a process", l.addr)
	}
	f := l.file
	l.file = nil
	return f
}

// FDSetting is the regmend listen setting ("fd://N") for the i-th entry of
// ProcSpec.Listeners.
func FDSetting(i int) string { return fmt.Sprintf("%s%d", daemon.FDPrefix, 3+i) }

// ReadAddrFile waits up to timeout for the addr file regmend (serve or the
// plugin, running in p) writes once it listens, and returns the addresses.
// It fails the test at once if p exits first.
func ReadAddrFile(t testing.TB, p *Proc, path string, timeout time.Duration) daemon.Addrs {
	t.Helper()
	var a daemon.Addrs
	err := WaitFor(timeout, p, p.Name()+" addr file", func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &a) // written by rename: whole or absent
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// listeningLine is distribution's (v3 and 2.8) start line, logged with the
// bound address.
var listeningLine = regexp.MustCompile(`listening on (\S+:\d+)`)

// WaitListening waits up to timeout for a registry started as p (with
// http.addr port 0) to log the address it bound in this run, and returns it.
func WaitListening(p *Proc, timeout time.Duration) (string, error) {
	var addr string
	err := WaitFor(timeout, p, p.Name()+" \"listening on\" log line", func() error {
		m := listeningLine.FindStringSubmatch(p.LogSinceStart())
		if m == nil {
			return fmt.Errorf("not logged yet")
		}
		addr = m[1]
		return nil
	})
	return addr, err
}

// ReservePort returns a loopback port held for the rest of the test, for
// the one case where neither port 0 nor a Listener can work: a port fixed
// in a deployment's configuration before anything starts (the chart's
// mirror port, written into hosts.toml by its init container and bound
// again by every pod). The port is never free: a socket stays bound to it
// with SO_REUSEADDR but does not listen, so the kernel hands it to no port
// 0 bind and no outgoing connection, while the server's own bind (Go sets
// SO_REUSEADDR) succeeds, restarts included.
func ReservePort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("reserve port: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatalf("reserve port: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("reserve port: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("reserve port: %v", err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
