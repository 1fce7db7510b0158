package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

type retryPolicy struct {
	attempts int
	base     time.Duration
}

var defaultRetry = retryPolicy{attempts: 5, base: 200 * time.Millisecond}

// MaxBackoff caps one wait between tries, and a registry's Retry-After, so
// a heal's total retry time stays bounded.
const MaxBackoff = 10 * time.Second

// do runs fn until it succeeds, fails permanently, or the attempts are
// spent. Between tries it waits with jittered exponential backoff, or as
// long as the registry's Retry-After asked (StatusError.As hands that to
// backoff.Retry), at most MaxBackoff.
func (p retryPolicy) do(ctx context.Context, fn func() error) error {
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		last = fn()
		if last != nil && !IsTransient(last) {
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	},
		backoff.WithBackOff(&backoff.ExponentialBackOff{
			InitialInterval:     p.base,
			RandomizationFactor: 0.5,
			Multiplier:          2,
			MaxInterval:         MaxBackoff,
		}),
		backoff.WithMaxTries(uint(p.attempts)),
		backoff.WithMaxElapsedTime(0),
	)
	if err != nil && last != nil && ctx.Err() != nil && !errors.Is(last, ctx.Err()) {
		return errors.Join(last, ctx.Err()) // say what failed before the caller gave up
	}
	return err
}

// StatusError is a registry's answer with an error status to a presence or
// tag check, an upload or a manifest PUT, and the Retry-After it asked for.
type StatusError struct {
	Code       int
	retryAfter time.Duration
	err        error
}

// Error says which request got which status.
func (e *StatusError) Error() string { return e.err.Error() }

// Unwrap returns the error classified with errdefs.
func (e *StatusError) Unwrap() error { return e.err }

// As gives backoff.Retry the registry's Retry-After.
func (e *StatusError) As(target any) bool {
	if ra, ok := target.(**backoff.RetryAfterError); ok && e.retryAfter > 0 {
		*ra = &backoff.RetryAfterError{Duration: min(e.retryAfter, MaxBackoff)}
		return true
	}
	return false
}

// IsTransient reports whether err may pass if tried again: dropped
// connections, timeouts, stalls, 408, 429 and 5xx. A registry this node
// cannot talk to as configured (certificate refused, plain HTTP spoken to
// an https client, host not found) is not transient: no retry mends it.
func IsTransient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if misconfigured(err) != "" {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return retryableStatus(se.Code)
	}
	var us remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &us) {
		return retryableStatus(us.StatusCode)
	}
	// ErrReset: a content writer that must start again (containerd's
	// pusher after re-sending a request itself).
	if errdefs.IsUnavailable(err) || errors.Is(err, ctrcontent.ErrReset) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// IsRegistrySide reports whether err came from the registry (no answer, an
// error status, credentials refused) rather than from this node.
func IsRegistrySide(err error) bool {
	var (
		ue *url.Error
		se *StatusError
		us remoteerrors.ErrUnexpectedStatus
	)
	return errors.As(err, &ue) || errors.As(err, &se) || errors.As(err, &us) ||
		errors.Is(err, docker.ErrInvalidAuthorization) || errdefs.IsUnauthorized(err)
}

// IsUnreachable reports whether err is a transport failure (refused, timed
// out, TLS) that concerns the whole registry, not one repository, and
// returns it.
func IsUnreachable(err error) (*url.Error, bool) {
	var ue *url.Error
	ok := errors.As(err, &ue)
	return ue, ok
}

// IsChildUnknown reports a registry refusing a manifest because something
// it names is not there (distribution's MANIFEST_BLOB_UNKNOWN,
// BLOB_UNKNOWN): a GC ran between an upload and the manifest PUT.
func IsChildUnknown(err error) bool {
	var us remoteerrors.ErrUnexpectedStatus
	if !errors.As(err, &us) || us.StatusCode != http.StatusBadRequest && us.StatusCode != http.StatusNotFound {
		return false
	}
	b := string(us.Body)
	return strings.Contains(b, "BLOB_UNKNOWN") || strings.Contains(b, "MANIFEST_UNKNOWN")
}

func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// parseRetryAfter reads a Retry-After header given in seconds or as a date.
func parseRetryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if d, err := time.ParseDuration(h + "s"); err == nil && d > 0 {
		return d
	}
	if t, err := http.ParseTime(h); err == nil {
		return time.Until(t)
	}
	return 0
}

// misconfigured says what to change when err is a transport failure that
// trying again cannot mend, or returns "". Every such failure is a
// *url.Error, which is a net.Error, so it must be told apart before the
// net.Error rule of IsTransient counts it as a dropped connection.
func misconfigured(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		recordHdr tls.RecordHeaderError
		dnsErr    *net.DNSError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "its certificate is signed by an authority this node does not trust: add the registry's CA to its hosts.toml (ca = \"/path/to/ca.crt\")"
	case errors.As(err, &hostname):
		return "its certificate is not issued for the name it is reached by: name the host its certificate names in hosts.toml (server, [host])"
	case errors.As(err, &invalid):
		return "its certificate is not valid (expired, or not for serving): fix the registry's certificate"
	case errors.Is(err, http.ErrSchemeMismatch),
		errors.As(err, &recordHdr) && string(recordHdr.RecordHeader[:]) == "HTTP/":
		return "the registry speaks http, not https: set server = \"http://...\" in its hosts.toml"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "host " + dnsErr.Name + " not found: check the registry's name and the server of its hosts.toml"
	}
	return ""
}

// classifyTransport returns a failed request of registry's: as it is when
// trying again may pass, else naming the registry, the host that failed
// (its own, a push host, a token server) and the fix, classified
// errdefs.ErrFailedPrecondition (the *url.Error kept for IsUnreachable).
func classifyTransport(registry string, err error) error {
	fix := misconfigured(err)
	if fix == "" {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != registry {
			registry += " (through host " + u.Host + ")"
		}
	}
	return fmt.Errorf("registry %s cannot be reached as configured: %s: %w: %w", registry, fix, err, errdefs.ErrFailedPrecondition)
}
