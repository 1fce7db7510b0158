package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/registry"
)

// uploadBlobSize is the blob the upload benchmarks send.
const uploadBlobSize = 32 << 20

// benchUpload uploads one 32 MiB blob file with Session.Upload to a loopback
// server that discards the body: the client's cost of reading, hashing and
// sending, without a registry's. readSize > 0 reads the file through a
// buffer of that size; 0 reads it as the HTTP client asks (32 KiB at a
// time), as content.Open does for files.
func benchUpload(b *testing.B, readSize int) {
	data := make([]byte, uploadBlobSize)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(data), Size: int64(len(data))}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/v2/"+microRepo+"/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	b.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	hostsDir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(hostsDir, host), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostsDir, host, "hosts.toml"), []byte("server = \""+srv.URL+"\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	remote, err := registry.NewRemote(registry.WithHostsDir(hostsDir))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sess, err := remote.Session(ctx, host, microRepo)
	if err != nil {
		b.Fatal(err)
	}
	open := func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil || readSize == 0 {
			return f, err
		}
		return struct {
			io.Reader
			io.Closer
		}{bufio.NewReaderSize(f, readSize), f}, nil
	}
	b.SetBytes(uploadBlobSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sess.Upload(ctx, desc, open); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUploadFile uploads a blob file read as content.Open reads one.
func BenchmarkUploadFile(b *testing.B) { benchUpload(b, 0) }

// BenchmarkUploadFile1MiB uploads it read through a content.ReadSize buffer.
func BenchmarkUploadFile1MiB(b *testing.B) { benchUpload(b, content.ReadSize) }
