package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/time/rate"

	"github.com/regmend/regmend/imageref"
)

// manifestAccept lists every manifest type regmend handles, so a registry
// answers a HEAD for any of them rather than 404 for "not acceptable".
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
	images.MediaTypeDockerSchema2Manifest, images.MediaTypeDockerSchema2ManifestList,
	"*/*",
}, ", ")

// Session talks to one repository of one registry, through the registry's
// own host as hosts.toml configures it. It keeps no state between requests
// but the request counts, so a plan made again after a GC sees the
// registry as it is. Its methods are safe for concurrent use.
type Session struct {
	registry, repo string
	host           docker.RegistryHost
	retry          retryPolicy
	counts         *requestCounts
	limiter        *rate.Limiter
}

// wait takes a token from the request-rate limit, if there is one.
func (s *Session) wait(ctx context.Context) error {
	if s.limiter == nil {
		return nil
	}
	return s.limiter.Wait(ctx)
}

// requestCounts counts the requests a heal sent, by kind.
type requestCounts struct{ heads, writes atomic.Int64 }

// Session opens a session with repo of registry, which must be allowed.
func (r *Remote) Session(ctx context.Context, registry, repo string) (*Session, error) {
	if err := imageref.ValidateRepository(repo); err != nil {
		return nil, err
	}
	h, err := r.pushHost(ctx, registry)
	if err != nil {
		return nil, err
	}
	h.Client = registryClient(h.Client, r.stall)
	return &Session{registry: registry, repo: repo, host: h, retry: r.retry, counts: &requestCounts{}, limiter: r.limiter}, nil
}

// Ref names object ("", "@digest" or ":tag") in the session's repository.
func (s *Session) Ref(object string) string { return s.registry + "/" + s.repo + object }

// Requests returns how many requests the session sent.
func (s *Session) Requests() int64 { return s.counts.heads.Load() + s.counts.writes.Load() }

// Retry runs fn until it succeeds, fails permanently, or the Remote's
// attempts are spent, waiting with exponential backoff (or as long as the
// registry's Retry-After asks) between tries.
func (s *Session) Retry(ctx context.Context, fn func() error) error { return s.retry.do(ctx, fn) }

// scoped adds the repository's pull and push token scopes to ctx, which
// containerd's authorizer reads when it fetches a bearer token.
func (s *Session) scoped(ctx context.Context) context.Context {
	spec := reference.Spec{Locator: s.registry + "/" + s.repo}
	sctx, err := docker.ContextWithRepositoryScope(ctx, spec, true)
	if err != nil {
		return ctx
	}
	return sctx
}

// head asks the registry for /v2/<repo>/<kind>/<ref> (with ?ns= through a
// push host that is not the registry, as containerd asks such a host) and
// returns the answer with its body closed. 404 is an answer, not an error.
func (s *Session) head(ctx context.Context, kind, ref string) (*http.Response, error) {
	return s.headIn(s.scoped(ctx), kind, ref)
}

// headIn is head in ctx, whose token scope the caller chose.
func (s *Session) headIn(ctx context.Context, kind, ref string) (*http.Response, error) {
	u := s.endpoint(kind, ref).String()
	var resp *http.Response
	err := s.retry.do(ctx, func() error {
		var err error
		resp, err = s.headOnce(ctx, u, true)
		return err
	})
	return resp, err
}

func (s *Session) headOnce(ctx context.Context, u string, reauth bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, fmt.Errorf("registry request %s: %w", u, errdefs.ErrInvalidArgument)
	}
	for k, v := range s.host.Header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", manifestAccept)
	if s.host.Authorizer != nil {
		if err := s.host.Authorizer.Authorize(ctx, req); err != nil {
			return nil, classifyTransport(s.registry, fmt.Errorf("authorize HEAD %s: %w", u, err))
		}
	}
	client := s.host.Client
	if client == nil {
		client = http.DefaultClient
	}
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	s.counts.heads.Add(1)
	resp, err := client.Do(req)
	if err != nil {
		return nil, classifyTransport(s.registry, fmt.Errorf("HEAD %s: %w", u, err))
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound:
		return resp, nil
	case resp.StatusCode == http.StatusUnauthorized && reauth && s.host.Authorizer != nil:
		if err := s.host.Authorizer.AddResponses(ctx, []*http.Response{resp}); err != nil {
			return nil, fmt.Errorf("HEAD %s: registry asks for credentials: %w", u, errdefs.ErrUnauthenticated)
		}
		return s.headOnce(ctx, u, false)
	}
	return nil, &StatusError{
		Code:       resp.StatusCode,
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
		err:        fmt.Errorf("HEAD %s: registry answered %s: %w", u, resp.Status, classifyStatus(resp.StatusCode)),
	}
}

func classifyStatus(code int) error {
	switch {
	case code == http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case code == http.StatusForbidden:
		return errdefs.ErrPermissionDenied
	case code == http.StatusTooManyRequests:
		return errdefs.ErrResourceExhausted
	case code >= 500:
		return errdefs.ErrUnavailable
	}
	return errdefs.ErrUnknown
}

// Exists reports whether the registry holds desc in the session's
// repository, asking the manifests endpoint when manifest is set.
func (s *Session) Exists(ctx context.Context, desc ocispec.Descriptor, manifest bool) (bool, error) {
	kind := "blobs"
	if manifest {
		kind = "manifests"
	}
	resp, err := s.head(ctx, kind, desc.Digest.String())
	if err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK, nil
}

// TagDigest returns the digest tag points at, if the tag exists.
func (s *Session) TagDigest(ctx context.Context, tag string) (digest.Digest, bool, error) {
	resp, err := s.head(ctx, "manifests", tag)
	if err != nil || resp.StatusCode == http.StatusNotFound {
		return "", false, err
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", true, fmt.Errorf("tag %s of %s: registry sent no valid Docker-Content-Digest: %w", tag, s.Ref(""), errdefs.ErrUnknown)
	}
	return d, true, nil
}

// Outcome says what an upload did.
type Outcome int

// Upload outcomes.
const (
	// Pushed: the bytes were uploaded.
	Pushed Outcome = iota
	// Mounted: the registry mounted the blob from another repository.
	Mounted
)
