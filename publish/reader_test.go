package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	regcontent "github.com/regmend/regmend/content"
)

// countingOpener serves data, counting the streams opened and the bytes
// read from them.
type countingOpener struct {
	data        []byte
	opens, read int
}

func (c *countingOpener) open() (io.ReadCloser, error) {
	c.opens++
	return io.NopCloser(readCounter{bytes.NewReader(c.data), &c.read}), nil
}

type readCounter struct {
	r *bytes.Reader
	n *int
}

func (r readCounter) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	*r.n += n
	return n, err
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStreamReaderAtSequential: the heal engine's way of reading a blob
// (content.Open, front to back in 1 MiB reads) opens its stream once and
// reads each byte once; a read elsewhere re-opens it.
func TestStreamReaderAtSequential(t *testing.T) {
	data := randomBytes(t, 3*regcontent.ReadSize+17)
	c := &countingOpener{data: data}
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	s := &store{blobs: map[digest.Digest]blob{desc.Digest: {size: desc.Size, open: c.open}}}
	rc, err := regcontent.Open(context.Background(), s, desc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the blob's %d", len(got), err, len(data))
	}
	if c.opens != 1 || c.read != len(data) {
		t.Errorf("%d opens reading %d bytes, want one stream read once (%d bytes)", c.opens, c.read, len(data))
	}

	ra := &streamReaderAt{size: desc.Size, open: c.open}
	defer ra.Close()
	c.opens, c.read = 0, 0
	p := make([]byte, 10)
	for _, tc := range []struct {
		off   int64
		opens int
	}{{0, 1}, {10, 1}, {1000, 2}, {1010, 2}, {5, 3}} {
		if n, err := ra.ReadAt(p, tc.off); n != len(p) || err != nil || !bytes.Equal(p, data[tc.off:tc.off+10]) {
			t.Fatalf("ReadAt(%d): %d, %v", tc.off, n, err)
		}
		if c.opens != tc.opens {
			t.Errorf("after ReadAt(%d): %d opens, want %d", tc.off, c.opens, tc.opens)
		}
	}
	if n, err := ra.ReadAt(make([]byte, 100), desc.Size-40); n != 40 || err != io.EOF {
		t.Errorf("ReadAt across the end: %d, %v; want 40, io.EOF", n, err)
	}
	if n, err := ra.ReadAt(p, desc.Size); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end: %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := ra.ReadAt(p, -1); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ReadAt(-1): %v, want invalid argument", err)
	}
}

// TestStreamReaderAtShort: a stream that ends before its size reads a
// plain io.EOF early, as a file shorter than its descriptor would.
func TestStreamReaderAtShort(t *testing.T) {
	data := randomBytes(t, 100)
	c := &countingOpener{data: data[:60]}
	ra := &streamReaderAt{size: 100, open: c.open}
	defer ra.Close()
	p := make([]byte, 50)
	if n, err := ra.ReadAt(p, 0); n != 50 || err != nil {
		t.Fatalf("ReadAt(0): %d, %v", n, err)
	}
	if n, err := ra.ReadAt(p, 50); n != 10 || err != io.EOF {
		t.Errorf("ReadAt(50) of a 60-byte stream sized 100: %d, %v; want 10, io.EOF", n, err)
	}
	if n, err := ra.ReadAt(p, 80); n != 0 || err != io.EOF {
		t.Errorf("ReadAt(80) past the stream's end: %d, %v; want 0, io.EOF", n, err)
	}
}

// TestStoreInfo: the store holds the image's blobs and nothing else.
func TestStoreInfo(t *testing.T) {
	data := randomBytes(t, 10)
	s := &store{blobs: map[digest.Digest]blob{}}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(data), Size: 10}
	if err := s.addDoc(desc, data); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background(), desc.Digest); err != nil || info.Size != 10 {
		t.Errorf("Info: %+v, %v", info, err)
	}
	other := digest.FromString("other")
	if _, err := s.Info(context.Background(), other); !errdefs.IsNotFound(err) {
		t.Errorf("Info of a digest outside the image: %v, want not found", err)
	}
	if _, err := s.ReaderAt(context.Background(), ocispec.Descriptor{Digest: other}); !errdefs.IsNotFound(err) {
		t.Errorf("ReaderAt of a digest outside the image: %v, want not found", err)
	}
	desc.Digest = other
	if err := s.addDoc(desc, data); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a document whose bytes are not its digest's: %v, want invalid argument", err)
	}
}
