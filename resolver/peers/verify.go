package peers

import (
	"errors"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// errMismatch: a peer's bytes did not hash to the digest asked for.
var errMismatch = errors.New("peer content does not match its digest")

// copyBuf is the size of the chunks a blob is passed on in; the last chunk
// of the requested range is held back until the whole blob has verified.
const copyBuf = 256 << 10

// copyVerified reads a whole blob of size bytes from src, hashing all of
// it, and writes the bytes at offsets [start, end] to w. The last chunk of
// that range is written only once every byte of the blob has been read and
// the blob hashed to d, so a reader of w never receives the complete range
// from a blob that does not verify: with its Content-Length set, it sees a
// short body instead. It returns the bytes written.
func copyVerified(w io.Writer, src io.Reader, d digest.Digest, size, start, end int64) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, fmt.Errorf("verify %s: %w", d, errors.Join(err, errdefs.ErrInvalidArgument))
	}
	h := d.Algorithm().Hash()
	ra := newReadAhead(src, size)
	defer ra.stop()
	var (
		held, heldBuf []byte
		pos, written  int64
	)
	for c := range ra.out {
		if c.err != nil {
			return written, fmt.Errorf("peer content %s ends at %d of %d bytes: %w", d, pos+int64(len(c.b)), size, errdefs.ErrDataLoss)
		}
		h.Write(c.b)
		n := int64(len(c.b))
		// The part of this chunk inside [start, end].
		lo, hi := max(start, pos), min(end+1, pos+n)
		if lo < hi {
			if held != nil {
				m, err := w.Write(held)
				written += int64(m)
				if err != nil {
					return written, fmt.Errorf("pass on %s: %w", d, err)
				}
			}
			ra.recycle(heldBuf)
			held, heldBuf = c.b[lo-pos:hi-pos], c.buf
		} else {
			ra.recycle(c.buf)
		}
		pos += n
	}
	if pos < size {
		return written, fmt.Errorf("peer content %s ends at %d of %d bytes: %w", d, pos, size, errdefs.ErrDataLoss)
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return written, fmt.Errorf("peer content %s hashes to %s: %w", d, got, errors.Join(errMismatch, errdefs.ErrDataLoss))
	}
	m, err := w.Write(held)
	written += int64(m)
	if err != nil {
		return written, fmt.Errorf("pass on %s: %w", d, err)
	}
	return written, nil
}

// chunk is one read of a blob: b is the bytes read into buf.
type chunk struct {
	b, buf []byte
	err    error
}

// readAhead reads a blob of size bytes in chunks of copyBuf on its own
// goroutine, a few chunks ahead of the consumer, so reading from the peer,
// hashing and writing to containerd overlap. Buffers come back through
// recycle; stop ends the goroutine (the caller closes src's body too).
type readAhead struct {
	out  chan chunk
	free chan []byte
	done chan struct{}
}

// readAheadChunks is how many chunks may be in flight.
const readAheadChunks = 4

func newReadAhead(src io.Reader, size int64) *readAhead {
	ra := &readAhead{out: make(chan chunk, readAheadChunks), free: make(chan []byte, readAheadChunks), done: make(chan struct{})}
	for range readAheadChunks {
		ra.free <- make([]byte, copyBuf)
	}
	go func() {
		defer close(ra.out)
		for pos := int64(0); pos < size; {
			var buf []byte
			select {
			case buf = <-ra.free:
			case <-ra.done:
				return
			}
			n, err := io.ReadFull(src, buf[:min(int64(len(buf)), size-pos)])
			pos += int64(n)
			select {
			case ra.out <- chunk{b: buf[:n], buf: buf, err: err}:
			case <-ra.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) recycle(buf []byte) {
	if buf != nil {
		select {
		case ra.free <- buf:
		default:
		}
	}
}

func (ra *readAhead) stop() { close(ra.done) }

// idleReader cuts a body that delivers nothing for the idle timeout: each
// Read resets a timer whose expiry cancels the request.
type idleReader struct {
	r     io.Reader
	reset func()
}

func (i idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.reset()
	}
	return n, err
}
