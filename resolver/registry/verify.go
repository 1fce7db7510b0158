package registry

import (
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
		if _, err := io.ReadFull(v.r, p); err != nil {
			return 0, v.fail(fmt.Errorf("local content %s is shorter than its %d bytes: %w", v.desc.Digest, v.desc.Size, errdefs.ErrDataLoss))
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
	if err == io.EOF {
		return n, v.fail(fmt.Errorf("local content %s is shorter than its %d bytes: %w", v.desc.Digest, v.desc.Size, errdefs.ErrDataLoss))
	}
	if err != nil {
		return n, v.fail(fmt.Errorf("read local content %s: %w", v.desc.Digest, err))
	}
	return n, nil
}

func (v *verifyingReader) fail(err error) error {
	v.err.Store(&err)
	return err
}
