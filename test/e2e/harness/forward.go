package harness

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// front is a loopback address the harness owns, passing TCP connections
// through to a backend that may come and go. A registry binds port 0 on
// every start, and references, hosts.toml files and regmend's --registry
// name the front, which stays the same across restarts (garbage
// collection, emptying the storage). With no backend, or one that refuses,
// a connection is reset at once, as close as TCP lets a listener come to
// "connection refused".
type front struct {
	ln      net.Listener
	backend atomic.Pointer[string]
}

func startFront(t testing.TB) *front {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("front listen: %v", err)
	}
	f := &front{ln: ln}
	go f.serve()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *front) addr() string { return f.ln.Addr().String() }

// setBackend routes new connections to addr ("" for none).
func (f *front) setBackend(addr string) { f.backend.Store(&addr) }

func (f *front) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.pipe(c.(*net.TCPConn))
	}
}

func (f *front) pipe(c *net.TCPConn) {
	defer c.Close()
	var b *net.TCPConn
	if addr := f.backend.Load(); addr != nil && *addr != "" {
		if bc, err := net.DialTimeout("tcp", *addr, 5*time.Second); err == nil {
			b = bc.(*net.TCPConn)
		}
	}
	if b == nil {
		c.SetLinger(0) // reset, not a clean close a client could take for an answer
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(b, c)
		b.CloseWrite()
		close(done)
	}()
	io.Copy(c, b)
	c.CloseWrite()
	<-done
}
