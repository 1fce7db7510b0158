package registry

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// verifyingReader streams exactly desc.Size bytes and hashes them as they
// pass. The read that would deliver the final bytes first checks the digest:
// on a mismatch it fails instead, so the upload never receives a complete
// body and the registry can never commit unverified bytes.
//
// Read runs on the HTTP transport's goroutine, which may still be reading
// when the response has come back; the failure is kept atomically so the
// caller can ask for it (Err) once the request returns.
type verifyingReader struct {
	r         io.Reader
	desc      ocispec.Descriptor
	h         hash.Hash
	remaining int64
	err       atomic.Pointer[error]
}

func newVerifyingReader(r io.Reader, desc ocispec.Descriptor) *verifyingReader {
	return &verifyingReader{r: r, desc: desc, h: desc.Digest.Algorithm().Hash(), remaining: desc.Size}
}

// Err returns why the local content failed to verify, or nil.
func (v *verifyingReader) Err() error {
	if e := v.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if err := v.Err(); err != nil {
		return 0, err
	}
	if v.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) >= v.remaining {
		// The last chunk: read all of it, check, then release it.
		p = p[:v.remaining]
		if err := readFull(v.r, p); err != nil {
			return 0, v.fail(v.readError(err))
		}
		v.h.Write(p)
		v.remaining = 0
		if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
			return 0, v.fail(fmt.Errorf("local content %s does not match its digest (hashes to %s): %w", v.desc.Digest, got, errdefs.ErrDataLoss))
		}
		return len(p), nil
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.remaining -= int64(n)
	if err != nil {
		return n, v.fail(v.readError(err))
	}
	return n, nil
}

// readFull fills p, as io.ReadFull, but returns r's own error: io.EOF only
// when r ended, never an io.ErrUnexpectedEOF of its own making.
func readFull(r io.Reader, p []byte) error {
	for n := 0; n < len(p); {
		m, err := r.Read(p[n:])
		if n += m; n == len(p) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readError names a failed read of the local content. Only an end before
// desc.Size is data loss; any other failure (the caller gave up, the
// content store is unavailable) keeps its cause and class, so that it is
// retried or reported as what it is, not counted as lost content.
func (v *verifyingReader) readError(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("local content %s is shorter than its %d bytes: %w", v.desc.Digest, v.desc.Size, errdefs.ErrDataLoss)
	}
	return fmt.Errorf("read local content %s: %w", v.desc.Digest, err)
}

func (v *verifyingReader) fail(err error) error {
	v.err.Store(&err)
	return err
}
