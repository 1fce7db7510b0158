package peers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/mirror"
)

// ProbeHeader marks a request that only asks whether a peer holds content
// (ownership ranking). The peer answers it as any HEAD but queues no heal.
const ProbeHeader = "Regmend-Probe"

// Client asks peers for content by digest, with the cluster token, bounded
// by timeouts. A peer that fails at the transport level is skipped for a
// while, so a dead peer costs one timeout, not one per request.
type Client struct {
	members   *Membership
	token     secret.Source
	http      *http.Client
	timeout   time.Duration
	idle      time.Duration
	downFor   time.Duration
	metrics   *Metrics
	mu        sync.Mutex
	downUntil map[string]time.Time
	hints     map[string]Peer // registry/repo → the peer that last served it
	deny      Denier          // deny.go
}

// ClientOption configures a Client.
type ClientOption func(*Client) error

// Client defaults.
const (
	// DefaultTimeout bounds a HEAD to a peer and the wait for a GET's
	// response headers.
	DefaultTimeout = 2 * time.Second
	// DefaultIdleTimeout cuts a peer's body that stalls this long.
	DefaultIdleTimeout = 10 * time.Second
	// downFor is how long a peer that failed is not asked.
	defaultDownFor = 10 * time.Second
)

// WithTimeout bounds each HEAD and the wait for each GET's headers. The
// default is DefaultTimeout.
func WithTimeout(d time.Duration) ClientOption {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("peer timeout %s: must be positive: %w", d, errdefs.ErrInvalidArgument)
		}
		c.timeout = d
		return nil
	}
}

// WithIdleTimeout cuts a response body that delivers nothing for d. The
// default is DefaultIdleTimeout.
func WithIdleTimeout(d time.Duration) ClientOption {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("peer idle timeout %s: must be positive: %w", d, errdefs.ErrInvalidArgument)
		}
		c.idle = d
		return nil
	}
}

// WithTLS uses cfg for https peers (CA to trust, client certificate for
// mutual TLS). The default trusts the system roots and presents none.
func WithTLS(cfg *tls.Config) ClientOption {
	return func(c *Client) error {
		t := c.http.Transport.(*http.Transport)
		t.TLSClientConfig = cfg
		return nil
	}
}

// WithClientMetrics records requests, bytes and digest mismatches.
func WithClientMetrics(m *Metrics) ClientOption {
	return func(c *Client) error { c.metrics = m; return nil }
}

// NewClient asks members' peers, presenting token as a bearer token.
func NewClient(members *Membership, token secret.Source, opts ...ClientOption) (*Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // peers are reached directly
	tr.MaxIdleConnsPerHost = 4
	c := &Client{
		members: members, token: token, timeout: DefaultTimeout, idle: DefaultIdleTimeout, downFor: defaultDownFor,
		http:      &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		downUntil: map[string]time.Time{}, hints: map[string]Peer{},
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// maxInFlight bounds the HEADs one lookup has in flight; peers not asked
// by the timeout count as not holding.
const maxInFlight = 32

// holder is a peer that answered 200 to a HEAD.
type holder struct {
	peer      Peer
	size      int64
	mediaType string
	healing   bool      // a probe's answer: the peer is healing the root now
	healed    time.Time // a probe's answer: when its last heal of the root ended (zero: none)
}

// find sends HEAD for ref to every peer not marked down, concurrently,
// each bounded by the timeout. With first, it returns as soon as one
// holds ref; otherwise it waits for every answer and returns all holders.
func (c *Client) find(ctx context.Context, ref mirror.Ref, probe, first bool) []holder {
	peers := c.members.Peers()
	if len(peers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	answers := make(chan *holder, len(peers))
	slots := make(chan struct{}, maxInFlight)
	asked := 0
	for _, p := range peers {
		if c.isDown(p) {
			c.metrics.request("skipped")
			continue
		}
		asked++
		go func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				answers <- c.head(ctx, p, ref, probe)
			case <-ctx.Done():
				answers <- nil // not asked before the deadline
			}
		}()
	}
	var out []holder
	for range asked {
		h := <-answers // every head returns by the deadline
		if h == nil {
			continue
		}
		out = append(out, *h)
		if first {
			return out // the rest end with cancel; answers is buffered
		}
	}
	return out
}

// head asks one peer whether it holds ref; nil means no (or no answer).
func (c *Client) head(ctx context.Context, p Peer, ref mirror.Ref, probe bool) *holder {
	req, err := c.newRequest(ctx, http.MethodHead, p, ref)
	if err != nil {
		return nil
	}
	if probe {
		req.Header.Set(ProbeHeader, "1")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if isCanceled(ctx) {
			return nil // another peer answered first, or the caller left
		}
		c.markDown(p)
		c.metrics.request("error")
		return nil
	}
	resp.Body.Close()
	c.markUp(p)
	switch {
	case resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 && resp.Header.Get("Docker-Content-Digest") == ref.Digest.String():
		c.metrics.request("hit")
		return &holder{peer: p, size: resp.ContentLength, mediaType: resp.Header.Get("Content-Type"),
			healing: resp.Header.Get(HealingHeader) != "", healed: healedAt(resp.Header.Get(HealedHeader))}
	case resp.StatusCode == http.StatusNotFound:
		c.metrics.request("miss")
	default:
		c.metrics.request("error")
	}
	return nil
}

// isCanceled tells a request cut because another peer answered first
// (context canceled) from one that timed out.
func isCanceled(ctx context.Context) bool { return ctx.Err() == context.Canceled }

func (c *Client) newRequest(ctx context.Context, method string, p Peer, ref mirror.Ref) (*http.Request, error) {
	u := p.URL + "/v2/" + ref.Repository + "/" + ref.Kind + "/" + ref.Digest.String() + "?ns=" + url.QueryEscape(ref.Registry)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("peer request %s: %w", p.ID, err)
	}
	tok, err := c.token.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("peer token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	req.Header.Set("Accept", "*/*")
	return req, nil
}

func (c *Client) isDown(p Peer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Before(c.downUntil[p.ID])
}

func (c *Client) markDown(p Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.downUntil[p.ID] = time.Now().Add(c.downFor)
}

func (c *Client) markUp(p Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.downUntil, p.ID)
}

// refOf is the request for a root manifest, as ownership probes send it.
func refOf(registry, repo string, d digest.Digest) mirror.Ref {
	return mirror.Ref{Registry: registry, Repository: repo, Kind: "manifests", Digest: d}
}
