package publish

import (
	"context"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
)

// Option configures a WriteIndex or Write, under the names of
// go-containerregistry's remote options: remote.Option cannot be read
// outside its package, so publish has its own.
type Option func(*options) error

type options struct {
	ctx       context.Context
	auth      authn.Authenticator
	keychain  authn.Keychain
	transport http.RoundTripper
	userAgent string
	jobs      int
	deep      bool
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{ctx: context.Background(), auth: authn.Anonymous, deep: true}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("publish option: nil: %w", errdefs.ErrInvalidArgument)
		}
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithAuth sends the registry the credentials auth gives. It replaces
// WithAuthFromKeychain. The default is anonymous.
func WithAuth(auth authn.Authenticator) Option {
	return func(o *options) error {
		if auth == nil {
			return fmt.Errorf("publish auth: nil authenticator: %w", errdefs.ErrInvalidArgument)
		}
		o.auth, o.keychain = auth, nil
		return nil
	}
}

// WithAuthFromKeychain resolves the registry's credentials from keys (for
// example authn.DefaultKeychain, the docker config.json). It replaces
// WithAuth.
func WithAuthFromKeychain(keys authn.Keychain) Option {
	return func(o *options) error {
		if keys == nil {
			return fmt.Errorf("publish keychain: nil: %w", errdefs.ErrInvalidArgument)
		}
		o.keychain, o.auth = keys, nil
		return nil
	}
}

// WithTransport sends every request, token fetches included, through t.
// The default is containerd's default transport (proxy from the
// environment, TLS 1.2 or later).
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) error {
		if t == nil {
			return fmt.Errorf("publish transport: nil: %w", errdefs.ErrInvalidArgument)
		}
		o.transport = t
		return nil
	}
}

// WithContext bounds the publish by ctx: cancelling it stops the requests
// in flight. The default is context.Background().
func WithContext(ctx context.Context) Option {
	return func(o *options) error {
		if ctx == nil {
			return fmt.Errorf("publish context: nil: %w", errdefs.ErrInvalidArgument)
		}
		o.ctx = ctx
		return nil
	}
}

// WithUserAgent sends ua as the User-Agent of every registry request,
// token fetches included. The default is Go's.
func WithUserAgent(ua string) Option {
	return func(o *options) error { o.userAgent = ua; return nil }
}

// WithJobs bounds the requests a publish has in flight, uploads included.
// The default is the heal engine's (heal.DefaultConcurrency requests,
// heal.DefaultUploads uploads of blobs over 1 MiB).
func WithJobs(jobs int) Option {
	return func(o *options) error {
		if jobs < 1 {
			return fmt.Errorf("publish jobs %d: must be at least 1: %w", jobs, errdefs.ErrInvalidArgument)
		}
		o.jobs = jobs
		return nil
	}
}

// WithDeepCheck(false) trusts the registry to hold the blobs of every
// manifest it holds, and asks only about manifests (one HEAD each). The
// default (true) also asks about every config and layer (one HEAD each,
// as remote.Write does), so a blob lost from under a manifest the
// registry kept is restored too.
func WithDeepCheck(deep bool) Option {
	return func(o *options) error { o.deep = deep; return nil }
}
