package imagetest

import (
	"context"
	"sync/atomic"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// APIStore reads a store as containerd's gRPC client does: its ReaderAt is
// not a file (no Reader method), so every read is a request. It counts the
// ReaderAt calls that reach it, so a test can tell which read path a blob
// took.
type APIStore struct {
	ctrcontent.Store
	opens atomic.Int64
}

// OverAPI returns cs read as over containerd's API.
func OverAPI(cs ctrcontent.Store) *APIStore { return &APIStore{Store: cs} }

// ReaderAt opens desc in the wrapped store and hides that it is a file.
func (s *APIStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	ra, err := s.Store.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	s.opens.Add(1)
	return apiReaderAt{ra}, nil
}

// Opens returns how many blobs were opened through the store.
func (s *APIStore) Opens() int64 { return s.opens.Load() }

// apiReaderAt has only ReaderAt's methods.
type apiReaderAt struct{ ra ctrcontent.ReaderAt }

func (r apiReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.ra.ReadAt(p, off) }
func (r apiReaderAt) Close() error                            { return r.ra.Close() }
func (r apiReaderAt) Size() int64                             { return r.ra.Size() }
