package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A registry's HEAD 200 can be a lie: distribution with a blob descriptor
// cache (inmemory, or Harbor's redis) keeps answering for blobs its garbage
// collector deleted, and its GET then sends 200 or 206 with no body. The
// confirmations below read just enough to see whether the registry serves
// the content, not only that it names it.

// errUnserved marks content a registry reports present but does not serve.
var errUnserved = fmt.Errorf("the registry reports it present but does not serve it: %w", errdefs.ErrDataLoss)

// errAbsent marks content the registry does not claim either (404).
var errAbsent = fmt.Errorf("not in the registry: %w", errUnserved)

// IsAbsent reports whether err is a confirmation the registry answered
// 404: absent, not a lie. IsUnserved recognises it too.
func IsAbsent(err error) bool { return errors.Is(err, errAbsent) }

// IsUnserved reports whether err is a confirmation that failed: the
// registry answered, and did not serve the content it claims to hold.
func IsUnserved(err error) bool { return errors.Is(err, errUnserved) }

// ConfirmBlob reads back the first byte of desc from the registry: a GET
// with Range: bytes=0-0 that must answer 206 with exactly one byte (its
// Content-Range, when sent, naming desc.Size), or 200 (a registry that
// ignores Range) with Content-Length desc.Size and a first byte, after
// which the body is closed unread. An empty blob must answer 200 with no
// body: there is no first byte to ask for, and any empty answer is its
// content. It returns nil when confirmed, an error IsUnserved recognises
// when the registry answered without the byte, and any other error when
// the registry could not be asked (transient failures are retried).
func (s *Session) ConfirmBlob(ctx context.Context, desc ocispec.Descriptor) error {
	hdr := http.Header{}
	if desc.Size > 0 {
		hdr.Set("Range", "bytes=0-0")
	}
	return s.confirm(ctx, "blobs", desc, hdr, func(resp *http.Response) error { return blobAnswer(resp, desc.Size) })
}

// ConfirmManifest reads desc back from the registry by digest (at most
// 4 MiB) and checks its bytes hash to desc.Digest. It returns nil when
// they do, an error IsUnserved recognises when the registry answered
// otherwise, and any other error when it could not be asked.
func (s *Session) ConfirmManifest(ctx context.Context, desc ocispec.Descriptor) error {
	hdr := http.Header{"Accept": {manifestAccept}}
	return s.confirm(ctx, "manifests", desc, hdr, func(resp *http.Response) error {
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET answered %s", resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
		if err != nil {
			return fmt.Errorf("reading the body after %d bytes: %v", len(b), err)
		}
		if got := desc.Digest.Algorithm().FromBytes(b); int64(len(b)) != desc.Size || got != desc.Digest {
			return fmt.Errorf("GET served %d bytes hashing to %s, not its %d bytes", len(b), got, desc.Size)
		}
		return nil
	})
}

// confirm GETs /v2/<repo>/<kind>/<digest> and lets check judge the answer.
// Transient statuses and failed connections are retried; the reads count
// among the session's requests.
func (s *Session) confirm(ctx context.Context, kind string, desc ocispec.Descriptor, hdr http.Header, check func(*http.Response) error) error {
	ctx = s.scoped(ctx)
	u := s.endpoint(kind, desc.Digest.String())
	return s.retry.do(ctx, func() error {
		resp, err := s.send(ctx, http.MethodGet, u, hdr, nil, 0)
		if err != nil {
			return fmt.Errorf("confirm %s %s in %s: %w", kindName(kind), desc.Digest, s.Ref(""), err)
		}
		defer func() {
			if kind == "blobs" && resp.StatusCode == http.StatusOK && desc.Size > 0 {
				resp.Body.Close() // a whole blob, sent despite the Range: left unread
				return
			}
			drain(resp) // small answers: read out, so the connection is reused
		}()
		if retryableStatus(resp.StatusCode) || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("confirm %s %s in %s: %w", kindName(kind), desc.Digest, s.Ref(""), statusError(resp))
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s %s in %s: %w", kindName(kind), desc.Digest, s.Ref(""), errAbsent)
		}
		if err := check(resp); err != nil {
			// A body cut short is the lie itself (distribution announces the
			// length and sends nothing), not a dropped connection to retry.
			return fmt.Errorf("%s %s in %s: %s: %w", kindName(kind), desc.Digest, s.Ref(""), err, errUnserved)
		}
		return nil
	})
}

// blobAnswer judges the answer to a blob's confirming GET.
func blobAnswer(resp *http.Response, size int64) error {
	switch {
	case size == 0 && resp.StatusCode == http.StatusOK:
		if n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1)); n != 0 {
			return fmt.Errorf("GET of an empty blob served bytes")
		}
		return nil
	case size > 0 && resp.StatusCode == http.StatusPartialContent:
		if total, ok := rangeTotal(resp.Header.Get("Content-Range")); ok && total != size {
			return fmt.Errorf("GET bytes=0-0 answered Content-Range %q, not of its %d bytes", resp.Header.Get("Content-Range"), size)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 2))
		if len(b) != 1 || err != nil {
			return fmt.Errorf("GET bytes=0-0 answered 206 with %d bytes, want 1", len(b))
		}
		return nil
	case size > 0 && resp.StatusCode == http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != size {
			return fmt.Errorf("GET answered 200 with Content-Length %d, not its %d bytes", resp.ContentLength, size)
		}
		var b [1]byte
		if _, err := io.ReadFull(resp.Body, b[:]); err != nil {
			return fmt.Errorf("GET answered 200 with no body")
		}
		return nil
	}
	return fmt.Errorf("GET answered %s", resp.Status)
}

// rangeTotal reads the complete length of a Content-Range "bytes a-b/N";
// false when absent, unknown ("*") or unreadable.
func rangeTotal(h string) (int64, bool) {
	_, total, ok := strings.Cut(h, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(total), 10, 64)
	return n, err == nil
}

func kindName(kind string) string {
	if kind == "manifests" {
		return "manifest"
	}
	return "blob"
}
