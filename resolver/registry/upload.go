package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
)

// maxManifestSize bounds a manifest held in memory to be sent: the limit
// distribution and containerd apply to manifests.
const maxManifestSize = 4 << 20

// Upload writes a blob the caller has found absent (its plan asked the
// registry), and asks nothing first. When desc's
// distribution-source annotations name another repository of this
// registry it asks for a cross-repository mount (POST ?mount=&from=);
// otherwise, or if the registry starts an upload instead or refuses the
// mount (any answer but 201 and 202: a plain POST follows), it streams the
// bytes open returns, through the digest check, in one monolithic PUT
// ?digest= (distribution's "monolithic upload" after a POST). Bytes that do
// not match desc never reach the registry whole, and the error is
// errdefs.ErrDataLoss naming the local content. Upload tries once; wrap it
// in Retry, which re-opens the content.
func (s *Session) Upload(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) (Outcome, error) {
	ctx = s.scoped(ctx)
	start := s.endpoint("blobs", "uploads/")
	resp, mounted, err := s.startUpload(ctx, start, desc)
	if err != nil {
		return 0, fmt.Errorf("start upload of %s to %s: %w", desc.Digest, s.Ref(""), err)
	}
	if mounted {
		return Mounted, nil
	}
	put, err := uploadURL(start, resp.Header.Get("Location"))
	if err != nil {
		return 0, fmt.Errorf("upload of %s to %s: %w", desc.Digest, s.Ref(""), err)
	}
	q := put.Query()
	q.Set("digest", desc.Digest.String())
	if s.viaMirror() {
		q.Set("ns", s.registry)
	}
	put.RawQuery = q.Encode()
	var vr *verifyingReader
	body := func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		vr = newVerifyingReader(rc, desc)
		return struct {
			io.Reader
			io.Closer
		}{vr, rc}, nil
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err = s.send(ctx, http.MethodPut, put, hdr, body, desc.Size)
	if vr != nil && vr.Err() != nil {
		return 0, vr.Err() // local side: bad bytes, never sent whole
	}
	if err != nil {
		return 0, fmt.Errorf("upload %s to %s: %w", desc.Digest, s.Ref(""), err)
	}
	if err := expect(resp, http.StatusCreated, http.StatusNoContent, http.StatusOK); err != nil {
		return 0, fmt.Errorf("upload %s to %s: %w", desc.Digest, s.Ref(""), err)
	}
	return Pushed, nil
}

// startUpload POSTs to start, with a mount request when desc names another
// source repository. It reports a mount done (201), or returns the answer
// that carries the upload's Location (202).
func (s *Session) startUpload(ctx context.Context, start *url.URL, desc ocispec.Descriptor) (*http.Response, bool, error) {
	if from := s.mountCandidate(desc); from != "" {
		u := *start
		q := u.Query()
		q.Set("mount", desc.Digest.String())
		q.Set("from", from)
		u.RawQuery = q.Encode()
		mctx := docker.ContextWithAppendPullRepositoryScope(ctx, from)
		resp, err := s.send(mctx, http.MethodPost, &u, nil, nil, 0)
		switch {
		case err != nil && !errdefs.IsUnauthorized(err):
			return nil, false, err
		case err != nil: // no right to read from: upload instead
		case resp.StatusCode == http.StatusCreated:
			drain(resp)
			return nil, true, nil
		case resp.StatusCode == http.StatusAccepted:
			return resp, false, nil
		default:
			// 401/403 (no right to read from), or a registry that cannot
			// mount (404, 405, 5xx): upload instead, as containerd's pusher
			// and go-containerregistry do; the plain POST says whether the
			// registry takes writes at all.
			log.G(ctx).WithField("digest", desc.Digest).WithField("from", from).WithField("status", resp.Status).Debug("mount refused; uploading")
			drain(resp)
		}
	}
	resp, err := s.send(ctx, http.MethodPost, start, nil, nil, 0)
	if err != nil {
		return nil, false, err
	}
	if err := expect(resp, http.StatusAccepted); err != nil {
		return nil, false, err
	}
	return resp, false, nil
}

// mountCandidate is the repository of this registry desc was pulled from
// that shares the longest path prefix with the session's, as containerd's
// pusher chooses; "" if none other than the session's own.
func (s *Session) mountCandidate(desc ocispec.Descriptor) string {
	target := strings.Split(s.repo, "/")
	best, n := "", -1
	for _, repo := range content.Sources(desc.Annotations, s.registry) {
		if repo == s.repo || repo == "" {
			continue
		}
		c := 0
		for i, part := range strings.Split(repo, "/") {
			if i >= len(target) || target[i] != part {
				break
			}
			c++
		}
		if c > n {
			best, n = repo, c
		}
	}
	return best
}

// PutManifest writes a manifest or index the caller has found absent at ref
// (its digest, or a tag the caller checked) in one PUT, without asking
// first. Its bytes are read whole (at most 4 MiB) and checked against desc
// before anything is sent. A refusal keeps the registry's error body, so
// IsChildUnknown sees MANIFEST_BLOB_UNKNOWN. PutManifest tries once; wrap it
// in Retry.
func (s *Session) PutManifest(ctx context.Context, ref string, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	b, err := readManifest(desc, open)
	if err != nil {
		return err
	}
	ctx = s.scoped(ctx)
	body := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	resp, err := s.send(ctx, http.MethodPut, s.endpoint("manifests", ref), http.Header{"Content-Type": {desc.MediaType}}, body, desc.Size)
	if err != nil {
		return fmt.Errorf("put manifest %s to %s: %w", desc.Digest, s.Ref(":"+ref), err)
	}
	if err := expect(resp, http.StatusCreated, http.StatusOK); err != nil {
		return fmt.Errorf("put manifest %s to %s: %w", desc.Digest, s.Ref(":"+ref), err)
	}
	return nil
}

// readManifest reads a manifest whole (at most 4 MiB), checked against
// desc: nothing unverified is sent.
func readManifest(desc ocispec.Descriptor, open func() (io.ReadCloser, error)) ([]byte, error) {
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("manifest %s is %d bytes, over the %d a registry takes: %w", desc.Digest, desc.Size, maxManifestSize, errdefs.ErrInvalidArgument)
	}
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(newVerifyingReader(rc, desc)) // a local failure, named by the verifying reader
}

// endpoint is the URL of /v2/<repo>/<kind>/<ref> on the session's host,
// with ?ns=<registry> when that host is not the registry itself, as
// containerd's pusher sends its writes.
func (s *Session) endpoint(kind, ref string) *url.URL {
	u := &url.URL{Scheme: s.host.Scheme, Host: s.host.Host, Path: s.host.Path + "/" + s.repo + "/" + kind + "/" + ref}
	if s.viaMirror() {
		u.RawQuery = url.Values{"ns": {s.registry}}.Encode()
	}
	return u
}

// viaMirror reports whether the session's host is not the registry itself
// (hosts.toml names another push host), which is then told the registry.
func (s *Session) viaMirror() bool {
	return s.host.Host != s.registry && (s.registry != "docker.io" || s.host.Host != "registry-1.docker.io")
}

// uploadURL resolves an upload's Location (absolute, or relative to the
// POST's URL) as the URL of its PUT.
func uploadURL(start *url.URL, location string) (*url.URL, error) {
	if location == "" {
		return nil, fmt.Errorf("registry started an upload without a Location: %w", errdefs.ErrUnknown)
	}
	u, err := start.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("upload Location %q: %w", location, errdefs.ErrUnknown)
	}
	return u, nil
}

// send makes one request with the host's headers and credentials, within
// the session's request rate, and returns the answer with its body open.
// A 401 lets containerd's authorizer take the challenge, and the request
// is sent once more (body re-opened). body may be nil.
func (s *Session) send(ctx context.Context, method string, u *url.URL, hdr http.Header, body func() (io.ReadCloser, error), size int64) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("registry request %s: %w", u.Redacted(), errdefs.ErrInvalidArgument)
		}
		for k, v := range s.host.Header {
			req.Header[k] = v
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if body != nil {
			rc, err := body()
			if err != nil {
				return nil, err
			}
			req.Body, req.ContentLength = rc, size
			if size == 0 {
				rc.Close()
				req.Body = http.NoBody
			}
		}
		authorizer := s.host.Authorizer
		if u.Host != s.host.Host || u.Scheme != s.host.Scheme {
			// An upload sent elsewhere, or over another scheme (https to
			// http would carry the token in clear), gets no credentials,
			// as containerd's pusher.
			authorizer = nil
		}
		if authorizer != nil {
			if err := authorizer.Authorize(ctx, req); err != nil {
				closeBody(req)
				return nil, classifyTransport(s.registry, fmt.Errorf("authorize %s %s: %w", method, u.Redacted(), err))
			}
		}
		if err := s.wait(ctx); err != nil {
			closeBody(req)
			return nil, err
		}
		s.counts.writes.Add(1)
		resp, err := s.client().Do(req)
		if err != nil {
			return nil, classifyTransport(s.registry, fmt.Errorf("%s %s: %w", method, u.Redacted(), err))
		}
		if resp.StatusCode != http.StatusUnauthorized || authorizer == nil || attempt > 0 {
			return resp, nil
		}
		drain(resp)
		if err := authorizer.AddResponses(ctx, []*http.Response{resp}); err != nil {
			return nil, fmt.Errorf("%s %s: registry asks for credentials: %w", method, u.Redacted(), errors.Join(err, errdefs.ErrUnauthenticated))
		}
	}
}

func (s *Session) client() *http.Client {
	if s.host.Client == nil {
		return http.DefaultClient
	}
	return s.host.Client
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// drain reads what is left of a small answer and closes it, so its
// connection is reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// expect closes resp and returns nil when its status is one of ok, else
// the registry's refusal (statusError).
func expect(resp *http.Response, ok ...int) error {
	defer drain(resp)
	if slices.Contains(ok, resp.StatusCode) {
		return nil
	}
	return statusError(resp)
}

// statusError is a registry's refusal of a write, with its error body kept
// (ErrUnexpectedStatus, as containerd's pusher returns) for IsChildUnknown,
// its class for callers, and its Retry-After for Retry.
func statusError(resp *http.Response) error {
	us := remoteerrors.NewUnexpectedStatusErr(resp)
	return &StatusError{
		Code:       resp.StatusCode,
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
		err:        fmt.Errorf("%w: %w", us, classifyStatus(resp.StatusCode)),
	}
}
