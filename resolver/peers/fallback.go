package peers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/mirror"
)

var _ mirror.Fallback = (*Client)(nil)

// maxManifest bounds a manifest read from a peer; it is read whole and
// verified before anything is passed on. Registries refuse larger ones.
const maxManifest = 4 << 20

// attempts is how many holders one request tries before answering 404.
const attempts = 3

// ServeFallback serves ref from the first peer that holds it. Manifests
// are read whole and verified before they are served. A blob's GET streams
// the whole blob from the peer, whatever Range asked for, and holds back
// the last bytes until the blob has verified; on a mismatch the response
// is cut short (its Content-Length promised more), counted, and the peer
// skipped for a while. A blob's HEAD passes on the holder's size: it
// carries no content, and the GET that follows is verified. It returns
// false, having written nothing, when no peer holds ref or none answered
// in time: the mirror then answers 404.
func (c *Client) ServeFallback(w http.ResponseWriter, r *http.Request, ref mirror.Ref) bool {
	if c.denied(r.Context(), ref) {
		return false
	}
	ctx := log.WithLogger(r.Context(), log.G(r.Context()).WithField("digest", ref.Digest).WithField("repo", ref.Repository))
	for i := range attempts {
		h, hinted := c.hinted(ctx, r, ref, i == 0)
		if !hinted {
			hs := c.find(ctx, ref, false, true)
			if len(hs) == 0 {
				return false
			}
			h = hs[0]
		}
		var err error
		switch {
		case ref.Kind == "manifests":
			err = c.serveManifest(ctx, w, r, ref, h)
		case r.Method == http.MethodHead:
			blobHeaders(w, ref, h.size)
			w.WriteHeader(http.StatusOK)
		default:
			err = c.serveBlob(ctx, w, r, ref, h) // panics once headers are out
		}
		if err == nil {
			c.remember(ref, h.peer)
			return true
		}
		if hinted && errdefs.IsNotFound(err) {
			continue // the hint was wrong: look the digest up
		}
		if isCanceled(ctx) {
			return false // containerd hung up: the peer did nothing wrong
		}
		log.G(ctx).WithError(err).WithField("peer", h.peer.ID).Warn("peer could not serve; trying another")
		c.markDown(h.peer)
	}
	return false
}

// hinted returns, on the first attempt, the peer that last served this
// repository, when it is not marked down: a pull asks for several digests
// of one image, and its holder most likely holds them all. A GET goes to it
// directly (size unknown until it answers, -1); a HEAD asks it alone.
func (c *Client) hinted(ctx context.Context, r *http.Request, ref mirror.Ref, first bool) (holder, bool) {
	if !first {
		return holder{}, false
	}
	c.mu.Lock()
	p, ok := c.hints[ref.Registry+"/"+ref.Repository]
	c.mu.Unlock()
	if !ok || c.isDown(p) {
		return holder{}, false
	}
	if r.Method == http.MethodGet {
		return holder{peer: p, size: -1}, true
	}
	hctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if h := c.head(hctx, p, ref, false); h != nil {
		return *h, true
	}
	return holder{}, false
}

// maxHints bounds the repositories whose last holder is remembered.
const maxHints = 1024

func (c *Client) remember(ref mirror.Ref, p Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hints) >= maxHints {
		clear(c.hints)
	}
	c.hints[ref.Registry+"/"+ref.Repository] = p
}

func (c *Client) serveManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, ref mirror.Ref, h holder) error {
	if h.size > maxManifest {
		c.metrics.request("error")
		return fmt.Errorf("peer %s: manifest of %d bytes exceeds %d: %w", h.peer.ID, h.size, maxManifest, errdefs.ErrInvalidArgument)
	}
	f, err := c.get(ctx, h.peer, ref, h.size)
	if err != nil {
		return err
	}
	defer f.close()
	if f.resp.ContentLength > maxManifest {
		c.metrics.request("error")
		return fmt.Errorf("peer %s: manifest %s of %d bytes exceeds %d: %w", h.peer.ID, ref.Digest, f.resp.ContentLength, maxManifest, errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.LimitReader(idleReader{r: f.resp.Body, reset: f.reset}, maxManifest+1))
	if err != nil {
		c.metrics.request("error")
		return fmt.Errorf("read manifest %s from peer %s: %w", ref.Digest, h.peer.ID, err)
	}
	if len(b) > maxManifest || ref.Digest.Algorithm().FromBytes(b) != ref.Digest {
		c.metrics.digestMismatch()
		return fmt.Errorf("manifest %s from peer %s: %w", ref.Digest, h.peer.ID, errors.Join(errMismatch, errdefs.ErrDataLoss))
	}
	mt, err := content.MediaTypeOf(b, ref.Digest)
	if err != nil {
		c.metrics.request("error")
		return fmt.Errorf("manifest %s from peer %s: %w", ref.Digest, h.peer.ID, err)
	}
	c.metrics.addBytes("from_peers", int64(len(b)))
	hd := w.Header()
	hd.Set("Content-Type", mt)
	hd.Set("Docker-Content-Digest", ref.Digest.String())
	hd.Set("Docker-Distribution-API-Version", "registry/2.0")
	hd.Set("ETag", `"`+ref.Digest.String()+`"`)
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(b)
	}
	return nil
}

func (c *Client) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, ref mirror.Ref, h holder) error {
	f, err := c.get(ctx, h.peer, ref, h.size)
	if err != nil {
		return err
	}
	defer f.close()
	if h.size = f.resp.ContentLength; h.size < 0 {
		c.metrics.request("error")
		return fmt.Errorf("blob %s from peer %s: no Content-Length: %w", ref.Digest, h.peer.ID, errdefs.ErrDataLoss)
	}
	start, end, partial := parseRange(r.Header.Get("Range"), h.size)
	blobHeaders(w, ref, end-start+1)
	status := http.StatusOK
	if partial {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, h.size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	n, err := copyVerified(w, idleReader{r: f.resp.Body, reset: f.reset}, ref.Digest, h.size, start, end)
	c.metrics.addBytes("from_peers", n)
	if err != nil {
		switch {
		case errors.Is(err, errMismatch):
			c.metrics.digestMismatch()
			c.markDown(h.peer)
		case isCanceled(ctx): // containerd hung up: the peer did nothing wrong
		default:
			c.metrics.request("error")
			c.markDown(h.peer)
		}
		log.G(ctx).WithError(err).WithField("peer", h.peer.ID).Warn("peer blob cut short")
		// Headers are out: cut the response, so containerd sees a body
		// shorter than its Content-Length and never a complete bad blob.
		panic(http.ErrAbortHandler)
	}
	return nil
}

func blobHeaders(w http.ResponseWriter, ref mirror.Ref, length int64) {
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", ref.Digest.String())
	hd.Set("Docker-Distribution-API-Version", "registry/2.0")
	hd.Set("ETag", `"`+ref.Digest.String()+`"`)
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Content-Length", strconv.FormatInt(length, 10))
}

// fetch is a GET in progress: the headers arrived within the timeout;
// the body may stall for the idle timeout at most (reset pushes that
// deadline back), and close ends it.
type fetch struct {
	resp   *http.Response
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
}

func (f *fetch) reset() { f.timer.Reset(f.idle) }

func (f *fetch) close() {
	f.timer.Stop()
	f.resp.Body.Close()
	f.cancel()
}

// get sends GET for ref to p. size is what p's HEAD said, or -1 for a
// hinted GET sent without one: an answer whose Content-Length differs is
// refused before any of its body is read.
func (c *Client) get(ctx context.Context, p Peer, ref mirror.Ref, size int64) (*fetch, error) {
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(c.timeout, cancel)
	fail := func(err error) (*fetch, error) {
		timer.Stop()
		cancel()
		c.metrics.request("error")
		return nil, err
	}
	req, err := c.newRequest(ctx, http.MethodGet, p, ref)
	if err != nil {
		return fail(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fail(fmt.Errorf("GET %s from peer %s: %w", ref.Digest, p.ID, errors.Join(err, errdefs.ErrUnavailable)))
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		timer.Stop()
		cancel()
		c.metrics.request("miss")
		return nil, fmt.Errorf("GET %s from peer %s: %w", ref.Digest, p.ID, errdefs.ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != ref.Digest.String() {
		resp.Body.Close()
		return fail(fmt.Errorf("GET %s from peer %s: status %d, digest %q: %w", ref.Digest, p.ID, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), errdefs.ErrUnavailable))
	}
	if size >= 0 && resp.ContentLength != size {
		resp.Body.Close()
		return fail(fmt.Errorf("GET %s from peer %s: Content-Length %d, but its HEAD said %d bytes: %w", ref.Digest, p.ID, resp.ContentLength, size, errdefs.ErrDataLoss))
	}
	timer.Reset(c.idle)
	return &fetch{resp: resp, cancel: cancel, timer: timer, idle: c.idle}, nil
}

// parseRange reads a single "bytes=a-b", "bytes=a-" or "bytes=-n" range
// of a blob of size bytes. Anything else (none, several, unsatisfiable) is
// ignored and the whole blob served, as HTTP allows.
func parseRange(h string, size int64) (start, end int64, partial bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") || size == 0 {
		return 0, size - 1, false
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size - 1, false
	}
	switch {
	case a == "":
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, size - 1, false
		}
		start, end = max(size-n, 0), size-1
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s < 0 || s >= size {
			return 0, size - 1, false
		}
		start, end = s, size-1
		if b != "" {
			e, err := strconv.ParseInt(b, 10, 64)
			if err != nil || e < s {
				return 0, size - 1, false
			}
			end = min(e, size-1)
		}
	}
	return start, end, true
}
