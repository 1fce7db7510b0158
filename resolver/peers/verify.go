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
	cur, held := make([]byte, copyBuf), make([]byte, 0, copyBuf)
	var pos, written int64
	for pos < size {
		n, err := io.ReadFull(src, cur[:min(int64(len(cur)), size-pos)])
		h.Write(cur[:n])
		if err != nil {
			return written, fmt.Errorf("peer content %s ends at %d of %d bytes: %w", d, pos+int64(n), size, errdefs.ErrDataLoss)
		}
		// The part of this chunk inside [start, end].
		lo, hi := max(start, pos), min(end+1, pos+int64(n))
		if lo < hi {
			if len(held) > 0 {
				m, err := w.Write(held)
				written += int64(m)
				if err != nil {
					return written, fmt.Errorf("pass on %s: %w", d, err)
				}
			}
			held = append(held[:0], cur[lo-pos:hi-pos]...)
		}
		pos += int64(n)
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
