package publish

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
)

// streamReaderAt serves a blob's sequential reads from one open stream,
// as the heal engine reads a blob (content.Open: front to back). A read at
// another offset than where the last one ended re-opens the stream and
// skips to it: go-containerregistry layers cannot seek, and a blob is
// never held in memory whole.
type streamReaderAt struct {
	size int64
	open func() (io.ReadCloser, error)

	mu  sync.Mutex
	rc  io.ReadCloser
	pos int64 // offset of rc's next byte
}

// ReadAt implements io.ReaderAt. A stream that ends before the blob's size
// reads a plain io.EOF early, which the engine's digest check reports as
// data loss (content shorter than its size); bytes past the size are never
// read.
func (r *streamReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off < 0 {
		return 0, fmt.Errorf("read at offset %d: %w", off, errdefs.ErrInvalidArgument)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	if r.rc == nil || off != r.pos {
		if err := r.seek(off); err != nil {
			return 0, err
		}
	}
	want := min(int64(len(p)), r.size-off)
	n, err := io.ReadFull(r.rc, p[:want])
	r.pos += int64(n)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		r.drop()
		return n, io.EOF
	case err != nil:
		r.drop()
		return n, err
	case int64(n) < int64(len(p)):
		return n, io.EOF
	}
	return n, nil
}

// seek re-opens the stream and skips to off.
func (r *streamReaderAt) seek(off int64) error {
	r.drop()
	rc, err := r.open()
	if err != nil {
		return err
	}
	_, err = io.CopyN(io.Discard, rc, off)
	if err != nil {
		rc.Close()
		if errors.Is(err, io.EOF) {
			return io.EOF // shorter than off: the end came early
		}
		return err
	}
	r.rc, r.pos = rc, off
	return nil
}

func (r *streamReaderAt) drop() {
	if r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
}

// Size implements content.ReaderAt.
func (r *streamReaderAt) Size() int64 { return r.size }

// Close implements content.ReaderAt.
func (r *streamReaderAt) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop()
	return nil
}
