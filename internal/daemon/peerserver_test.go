package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/mirror"
	"github.com/regmend/regmend/resolver/peers"
)

type allowAll struct{}

func (allowAll) Allowed(string) bool { return true }

// startPeerServer serves a real peer endpoint over an empty local store
// with the daemon's peer server settings, idle as its keep-alive bound.
func startPeerServer(t *testing.T, idle time.Duration) (addr string, tok secret.Token) {
	t.Helper()
	store, _ := imagetest.LocalStore(t)
	tok, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ep := peers.NewEndpoint(secret.Static(tok), mirror.New(store, allowAll{}), mirror.New(store, allowAll{}), peers.NewMetrics(prometheus.NewRegistry()))
	srv := peerHTTPServer(context.Background(), ep, idle)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), tok
}

// request sends one HTTP/1.1 request on conn and reads its response.
func request(t *testing.T, conn net.Conn, br *bufio.Reader, auth string) *http.Response {
	t.Helper()
	raw := "GET /v2/ HTTP/1.1\r\nHost: peer\r\n"
	if auth != "" {
		raw += "Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, raw+"\r\n"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closedWithin reports whether the server closes conn within d: a read
// ends with EOF, not with the deadline.
func closedWithin(t *testing.T, conn net.Conn, br *bufio.Reader, d time.Duration) bool {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := br.ReadByte()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read from an idle connection: %v, want EOF or the deadline", err)
	}
	return true
}

// TestPeerServerBoundsConnections: anyone who reaches the peer port may
// connect before presenting a token, so no connection stays open for long
// without a request. A kept-alive connection is closed after the idle
// timeout; a request without the token gets 401 and its connection closed;
// oversized headers get 431.
func TestPeerServerBoundsConnections(t *testing.T) {
	const idle = 300 * time.Millisecond
	addr, tok := startPeerServer(t, idle)
	dial := func() (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, bufio.NewReader(conn)
	}

	t.Run("kept alive, then idle", func(t *testing.T) {
		conn, br := dial()
		start := time.Now()
		if resp := request(t, conn, br, "Bearer "+tok.Reveal()); resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("authenticated GET /v2/: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
		}
		if !closedWithin(t, conn, br, idle+5*time.Second) {
			t.Fatalf("an idle connection is still open %s after its request; want it closed after %s", time.Since(start), idle)
		}
		if took := time.Since(start); took < idle {
			t.Errorf("closed after %s, before the idle timeout %s", took, idle)
		}
	})
	t.Run("without the token", func(t *testing.T) {
		conn, br := dial()
		for _, auth := range []string{"", "Bearer " + strings.Repeat("0", 64)} {
			if resp := request(t, conn, br, auth); resp.StatusCode != http.StatusUnauthorized || !resp.Close {
				t.Fatalf("Authorization %q: %d, close %v; want 401 and the connection closed", auth, resp.StatusCode, resp.Close)
			}
			if !closedWithin(t, conn, br, idle/2) {
				t.Fatalf("Authorization %q: the connection is still open after the 401", auth)
			}
			conn, br = dial()
		}
	})
	t.Run("oversized headers", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Reveal())
		req.Header.Set("X-Padding", strings.Repeat("a", 2*peerMaxHeaderBytes))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("headers of %d bytes: %d, want 431", 2*peerMaxHeaderBytes, resp.StatusCode)
		}
	})
}
