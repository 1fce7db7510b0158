package content

import (
	"bufio"
	"context"
	"fmt"
	"io"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReadSize is how much is read from containerd's content store at once.
// Over gRPC each read is one request, so io.Copy's 32 KiB reads cost a heal
// more than half its time (make bench); containerd's own copies read 1 MiB.
const ReadSize = 1 << 20

// Open streams a local blob from its start. A blob read from a file (the
// content directory, or containerd's store in-process) is read as asked; any
// other is read in ReadSize blocks however small the reads asked of it, so
// that over gRPC a caller's 32 KiB reads do not each become a request.
func Open(ctx context.Context, p ctrcontent.Provider, desc ocispec.Descriptor) (io.ReadCloser, error) {
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("local content %s: %w", desc.Digest, err)
	}
	var r io.Reader
	if f, ok := ra.(interface{ Reader() io.Reader }); ok {
		r = f.Reader()
	} else {
		r = bufio.NewReaderSize(io.NewSectionReader(ra, 0, ra.Size()), int(min(max(ra.Size(), 16), ReadSize)))
	}
	return struct {
		io.Reader
		io.Closer
	}{r, ra}, nil
}

// ReadAhead serves one sequential reader of ra in ReadSize blocks however
// small the reads asked of it (http.ServeContent asks 32 KiB at a time):
// over gRPC every read is a request.
type ReadAhead struct {
	ra    io.ReaderAt
	buf   []byte
	start int64 // offset of buf[0]
}

// NewReadAhead returns a ReadAhead over ra.
func NewReadAhead(ra io.ReaderAt) *ReadAhead { return &ReadAhead{ra: ra} }

// ReadAt implements io.ReaderAt.
func (r *ReadAhead) ReadAt(p []byte, off int64) (int, error) {
	if off < r.start || off >= r.start+int64(len(r.buf)) {
		if cap(r.buf) == 0 {
			r.buf = make([]byte, ReadSize)
		}
		n, err := r.ra.ReadAt(r.buf[:cap(r.buf)], off)
		r.buf, r.start = r.buf[:n], off
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, r.buf[off-r.start:])
	if n < len(p) {
		m, err := r.ReadAt(p[n:], off+int64(n))
		return n + m, err
	}
	return n, nil
}
