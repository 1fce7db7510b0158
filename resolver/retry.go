package resolver

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

type retryPolicy struct {
	attempts int
	base     time.Duration
}

var defaultRetry = retryPolicy{attempts: 5, base: 200 * time.Millisecond}

// maxBackoff caps one wait, so a heal's total retry time stays bounded.
const maxBackoff = 10 * time.Second

// do runs fn until it succeeds, fails permanently, or the attempts are spent,
// waiting with exponential backoff and jitter between tries.
func (p retryPolicy) do(ctx context.Context, fn func() error) error {
	var err error
	for i := range p.attempts {
		if err = fn(); err == nil || !transient(err) {
			return err
		}
		if i == p.attempts-1 {
			break
		}
		wait := min(p.base<<i, maxBackoff)
		wait = wait/2 + rand.N(wait/2+1)
		if ra := retryAfter(err); ra > wait {
			wait = min(ra, maxBackoff)
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
	return err
}

// statusError is a registry answer with the status code and the
// Retry-After it asked for.
type statusError struct {
	code       int
	retryAfter time.Duration
	err        error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func retryAfter(err error) time.Duration {
	var se *statusError
	if errors.As(err, &se) {
		return se.retryAfter
	}
	return 0
}

// transient reports whether err may pass if tried again: dropped
// connections, timeouts, 408, 429 and 5xx.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var se *statusError
	if errors.As(err, &se) {
		return retryableStatus(se.code)
	}
	var us remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &us) {
		return retryableStatus(us.StatusCode)
	}
	// containerd's pusher resets its writer when it re-sent a request
	// itself (after a 429, say): the whole push must start again.
	if errdefs.IsUnavailable(err) || errors.Is(err, ctrcontent.ErrReset) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// parseRetryAfter reads a Retry-After header given in seconds.
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
