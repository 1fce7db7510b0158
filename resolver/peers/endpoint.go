package peers

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/secret"
)

// NewEndpoint returns the peer endpoint's handler. Every request must carry
// "Authorization: Bearer <token>" matching token (compared in constant
// time); any other gets 401 with WWW-Authenticate and no content, and its
// connection is closed. An
// authenticated request goes to serve, a mirror of the local store only
// (one without a fallback, so a peer's request never reaches further
// peers, and with the heal queue, so serving a peer counts as a local hit),
// or, when it carries ProbeHeader, to probe, the same mirror without the
// heal queue: ownership probes ask, they do not request a heal.
func NewEndpoint(token secret.Source, serve, probe http.Handler, m *Metrics, opts ...EndpointOption) http.Handler {
	var o endpointOptions
	for _, opt := range opts {
		opt(&o)
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		if r.Header.Get(ProbeHeader) != "" {
			if reg, repo, d, ok := probedRoot(r); ok {
				o.answer(w.Header(), reg, repo, d)
			}
			probe.ServeHTTP(cw, r)
		} else {
			serve.ServeHTTP(cw, r)
		}
		m.addBytes("to_peers", cw.n)
	})
	deny := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason, _, _ := secret.RefusalOf(r.Context())
		m.refusal(string(reason))
		body := `{"errors":[{"code":"UNAUTHORIZED","message":"peer token required"}]}` + "\n"
		w.Header().Set("WWW-Authenticate", `Bearer realm="regmend-peer"`)
		w.Header().Set("Content-Type", "application/json")
		// A client without the token keeps no connection open.
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusUnauthorized)
		if r.Method != http.MethodHead {
			w.Write([]byte(body))
		}
	})
	return secret.Require(token, secret.FromBearer(), inner, deny)
}

// HealingHeader, on a probe's answer, says that the node is healing the
// probed root now.
const HealingHeader = "Regmend-Healing"

// HealedHeader, on a probe's answer, says how long ago (in milliseconds)
// the node's last heal of the probed root ended having pushed what it
// could. A standing-by peer then asks the registry again; it does not
// compare clocks.
const HealedHeader = "Regmend-Healed-Ago"

// EndpointOption configures NewEndpoint.
type EndpointOption func(*endpointOptions)

type endpointOptions struct {
	healing func(registry, repo string, d digest.Digest) bool
	healed  func(registry, repo string, d digest.Digest) (time.Time, bool)
}

// answer sets the probe headers for a root.
func (o *endpointOptions) answer(h http.Header, registry, repo string, d digest.Digest) {
	if o.healing != nil && o.healing(registry, repo, d) {
		h.Set(HealingHeader, "1")
	}
	if o.healed != nil {
		if at, ok := o.healed(registry, repo, d); ok {
			h.Set(HealedHeader, strconv.FormatInt(max(time.Since(at).Milliseconds(), 0), 10))
		}
	}
}

// healedAt reads HealedHeader as a time by this node's clock; zero when
// absent or malformed.
func healedAt(v string) time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if v == "" || err != nil || ms < 0 {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(ms) * time.Millisecond)
}

// WithHealing answers a probe of a root that fn says this node is healing
// now with HealingHeader, which a standing-by peer counts as progress. The
// default says nothing.
func WithHealing(fn func(registry, repo string, d digest.Digest) bool) EndpointOption {
	return func(o *endpointOptions) { o.healing = fn }
}

// WithHealed answers a probe of a root that fn says this node healed at
// some time with HealedHeader. The default says nothing.
func WithHealed(fn func(registry, repo string, d digest.Digest) (time.Time, bool)) EndpointOption {
	return func(o *endpointOptions) { o.healed = fn }
}

// probedRoot reads /v2/<repo>/manifests/<digest>?ns=<registry>.
func probedRoot(r *http.Request) (registry, repo string, d digest.Digest, ok bool) {
	p, found := strings.CutPrefix(r.URL.Path, "/v2/")
	i := strings.LastIndex(p, "/manifests/")
	if !found || i <= 0 {
		return "", "", "", false
	}
	d, err := digest.Parse(p[i+len("/manifests/"):])
	if err != nil {
		return "", "", "", false
	}
	return r.URL.Query().Get("ns"), p[:i], d, true
}

// countingWriter counts the body bytes written.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// ServerTLS returns the peer endpoint's TLS settings: certificate and key,
// and with ca, mutual TLS (a peer must present a certificate ca signed).
func ServerTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS certificate: %w", errJoinInvalid(err))
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS returns the TLS settings for asking peers: ca (if set) is
// trusted for their certificates, and certFile/keyFile (if set) presented
// for mutual TLS.
func ClientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("peer TLS client certificate: %w", errJoinInvalid(err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("peer TLS CA %s: no PEM certificate: %w", caFile, errdefs.ErrInvalidArgument)
	}
	return pool, nil
}

func errJoinInvalid(err error) error { return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument) }
