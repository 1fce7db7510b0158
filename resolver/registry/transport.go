package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// errStalled is a request abandoned after the stall timeout without
// progress (see WithStallTimeout).
var errStalled = fmt.Errorf("registry stalled: %w", errdefs.ErrUnavailable)

// registryClient returns c with a transport that keeps two rules for every
// request of a session:
//   - once the registry answered 429 or 503 with Retry-After, nothing more
//     is sent until that time (at most MaxBackoff) has passed, by any of the
//     session's concurrent requests, so the wait is kept where the responses
//     are seen;
//   - a request that makes too little progress for stall is abandoned
//     (see roundTripGuarded).
func registryClient(c *http.Client, stall time.Duration) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cc := *c
	g := &registryTransport{next: cc.Transport, stall: stall}
	if g.next == nil {
		g.next = http.DefaultTransport
	}
	cc.Transport = g
	cc.CheckRedirect = keepCredentialsOnScheme(cc.CheckRedirect)
	return &cc
}

// keepCredentialsOnScheme drops the Authorization header from a redirect
// to another scheme before check (nil: Go's limit of 10 redirects) sees
// it: net/http forwards it to the same host name whatever the scheme, so an
// https registry redirecting to http://itself would get its token in clear.
func keepCredentialsOnScheme(check func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != via[0].URL.Scheme {
			req.Header.Del("Authorization")
		}
		if check != nil {
			return check(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

type registryTransport struct {
	next  http.RoundTripper
	stall time.Duration
	mu    sync.Mutex
	until time.Time // Retry-After
}

func (g *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.waitRetryAfter(req); err != nil {
		return nil, err
	}
	resp, err := g.roundTripGuarded(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d := parseRetryAfter(resp.Header.Get("Retry-After")); d > 0 {
			g.mu.Lock()
			if u := time.Now().Add(min(d, MaxBackoff)); u.After(g.until) {
				g.until = u
			}
			g.mu.Unlock()
		}
	}
	return resp, err
}

func (g *registryTransport) waitRetryAfter(req *http.Request) error {
	g.mu.Lock()
	wait := time.Until(g.until)
	g.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-req.Context().Done():
		if req.Body != nil {
			req.Body.Close()
		}
		return req.Context().Err()
	case <-t.C:
		return nil
	}
}

// stallProgress is how many bytes of a request body or of an answer must
// move within one stall timeout to start its clock again: a body that
// trickles a few bytes at a time (a congested link, a registry or proxy
// that reads one packet a minute) is as stalled as one that stops, and must
// not hold a heal for as long as it pleases. 64 KiB a minute, the default,
// is 1 KiB/s.
const stallProgress = 64 << 10

// roundTripGuarded sends req, cancelling it once it made too little
// progress for the stall timeout: the clock starts again when the answer
// comes, at the end of the request body and of the answer, and after every
// stallProgress bytes of either.
func (g *registryTransport) roundTripGuarded(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(g.stall, func() { cancel(errStalled) })
	r := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		r.Body = &progress{ReadCloser: req.Body, timer: timer, stall: g.stall}
	}
	resp, err := g.next.RoundTrip(r)
	if err != nil {
		timer.Stop()
		cancel(nil)
		if errors.Is(context.Cause(ctx), errStalled) && req.Context().Err() == nil {
			return nil, fmt.Errorf("no progress for %s: %w", g.stall, errStalled)
		}
		return nil, err
	}
	timer.Reset(g.stall)
	resp.Body = &progress{ReadCloser: resp.Body, timer: timer, stall: g.stall, done: func() { timer.Stop(); cancel(nil) }}
	return resp, nil
}

// progress restarts the stall clock once stallProgress bytes passed since
// it last started, and at the end of the body. Each body is read by one
// goroutine at a time, so moved needs no lock.
type progress struct {
	io.ReadCloser
	timer *time.Timer
	stall time.Duration
	moved int64 // bytes since the clock last started
	done  func()
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if p.moved += int64(n); p.moved >= stallProgress || err != nil {
		p.moved = 0
		p.timer.Reset(p.stall)
	}
	return n, err
}

func (p *progress) Close() error {
	if p.done != nil {
		p.done()
	}
	return p.ReadCloser.Close()
}
