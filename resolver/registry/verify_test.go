package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
)

// failingStore is containerd's local store whose blob reads fail with err
// the first fails times, as a content store over gRPC fails when containerd
// restarts or the caller gives up.
type failingStore struct {
	ctrcontent.Store
	err   error
	fails atomic.Int64
}

func (s *failingStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	ra, err := s.Store.ReaderAt(ctx, desc)
	if err != nil || s.fails.Add(-1) < 0 {
		return ra, err
	}
	return failingReaderAt{ReaderAt: ra, err: s.err}, nil
}

type failingReaderAt struct {
	ctrcontent.ReaderAt
	err error
}

func (r failingReaderAt) ReadAt([]byte, int64) (int, error) { return 0, r.err }

// TestUploadKeepsTheReadFailure: a read of local content that fails (not
// one that ends early) keeps its cause and class, whether the blob fits the
// verifier's last read or not: it is not data loss (the heal metrics count
// those as lost content), and an unavailable store is tried again.
func TestUploadKeepsTheReadFailure(t *testing.T) {
	for _, size := range []int{1024, 200 << 10} {
		for _, cause := range []error{context.Canceled, fmt.Errorf("content store: %w", errdefs.ErrUnavailable)} {
			t.Run(fmt.Sprintf("%d/%v", size, cause), func(t *testing.T) {
				reg, remote := plainRegistry(t, 3)
				local, _, desc := localBlob(t, size)
				cs := &failingStore{Store: local, err: cause}
				cs.fails.Store(1)
				s := session(t, remote, reg.Host, "app")
				_, err := s.Upload(t.Context(), desc, opener(t.Context(), cs, desc))
				if !errors.Is(err, cause) || errdefs.IsDataLoss(err) {
					t.Fatalf("upload whose local read failed with %v: %v; want that cause, not data loss", cause, err)
				}
				if !errdefs.IsUnavailable(cause) {
					return
				}
				if !registry.IsTransient(err) {
					t.Errorf("IsTransient = false for an unavailable content store: %v", err)
				}
				err = s.Retry(t.Context(), func() error {
					_, err := s.Upload(t.Context(), desc, opener(t.Context(), cs, desc))
					return err
				})
				if err != nil || !imagetest.Has(t, reg.Base, "app", "blobs", desc.Digest.String()) {
					t.Errorf("retried upload once the store is back: %v", err)
				}
			})
		}
	}
}

// TestUploadShortContentIsDataLoss: local content shorter than its
// descriptor is data loss, before the registry gets a whole body.
func TestUploadShortContentIsDataLoss(t *testing.T) {
	for _, size := range []int{1024, 200 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			reg, remote := plainRegistry(t, 1)
			cs, _, desc := localBlob(t, size)
			long := desc
			long.Size += 10 // the store holds 10 bytes fewer than the descriptor says
			s := session(t, remote, reg.Host, "app")
			_, err := s.Upload(t.Context(), long, opener(t.Context(), cs, long))
			if !errdefs.IsDataLoss(err) || registry.IsTransient(err) {
				t.Fatalf("upload of short content: %v, want permanent data loss", err)
			}
			if imagetest.Has(t, reg.Base, "app", "blobs", desc.Digest.String()) {
				t.Error("registry holds the blob from short content")
			}
		})
	}
}
