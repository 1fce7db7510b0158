package registry_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
)

// session opens a session with repository "app" of a loopback server
// answering with h, retrying 3 times 1ms apart.
func confirmSession(t *testing.T, h http.Handler) *registry.Session {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	imagetest.WriteHostsTOML(t, dir, host, fmt.Sprintf("server = %q\n", srv.URL))
	r, err := registry.NewRemote(registry.WithHostsDir(dir), registry.WithRetry(3, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Session(t.Context(), host, "app")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfirmBlob(t *testing.T) {
	data := []byte("the blob's bytes")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(len(data))}
	empty := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(nil), Size: 0}
	for _, tc := range []struct {
		name   string
		desc   ocispec.Descriptor
		answer func(w http.ResponseWriter, r *http.Request)
		ok     bool
	}{
		{name: "206 with the first byte", desc: desc, ok: true, answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", len(data)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[:1])
		}},
		{name: "206 with no byte (stale cache)", desc: desc, answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", len(data)))
			w.Header().Set("Content-Length", "1")
			w.WriteHeader(http.StatusPartialContent)
		}},
		{name: "206 of another length", desc: desc, answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-0/3")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[:1])
		}},
		{name: "200 whole blob, Range ignored", desc: desc, ok: true, answer: func(w http.ResponseWriter, r *http.Request) {
			w.Write(data)
		}},
		{name: "200 announcing the length, no body", desc: desc, answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.WriteHeader(http.StatusOK)
		}},
		{name: "200 of 0 bytes", desc: desc, answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "0")
		}},
		{name: "416", desc: desc, answer: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		}},
		{name: "404", desc: desc, answer: http.NotFound},
		{name: "empty blob, empty 200", desc: empty, ok: true, answer: func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") != "" {
				t.Errorf("an empty blob was asked for a range: %s", r.Header.Get("Range"))
			}
		}},
		{name: "empty blob, bytes served", desc: empty, answer: func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("x"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := confirmSession(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v2/app/blobs/"+tc.desc.Digest.String() {
					t.Errorf("unexpected access: %s %s", r.Method, r.URL)
					return
				}
				if tc.desc.Size > 0 && r.Header.Get("Range") != "bytes=0-0" {
					t.Errorf("Range %q, want bytes=0-0", r.Header.Get("Range"))
				}
				tc.answer(w, r)
			}))
			err := s.ConfirmBlob(t.Context(), tc.desc)
			switch {
			case tc.ok && err != nil:
				t.Errorf("confirm: %v, want confirmed", err)
			case !tc.ok && !registry.IsUnserved(err):
				t.Errorf("confirm: %v, want an error saying the registry does not serve it", err)
			case !tc.ok && !strings.Contains(err.Error(), tc.desc.Digest.String()):
				t.Errorf("error does not name the blob: %v", err)
			}
		})
	}
}

// TestConfirmRetriesTransientFailure: a 503 is the registry busy, not a
// verdict on the blob: it is asked again.
func TestConfirmRetriesTransientFailure(t *testing.T) {
	data := []byte("abc")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: 3}
	var n atomic.Int32
	s := confirmSession(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[:1])
	}))
	if err := s.ConfirmBlob(t.Context(), desc); err != nil || n.Load() != 2 {
		t.Errorf("confirm after a 503: %v after %d requests, want confirmed on the second", err, n.Load())
	}
}

func TestConfirmManifest(t *testing.T) {
	m := []byte(`{"schemaVersion":2}`)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
	for _, tc := range []struct {
		name string
		body []byte
		code int
		ok   bool
	}{
		{name: "its bytes", body: m, code: http.StatusOK, ok: true},
		{name: "no bytes", body: nil, code: http.StatusOK},
		{name: "other bytes", body: []byte(`{"schemaVersion":3}`), code: http.StatusOK},
		{name: "404", code: http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := confirmSession(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v2/app/manifests/"+desc.Digest.String() {
					t.Errorf("unexpected access: %s %s", r.Method, r.URL)
				}
				w.WriteHeader(tc.code)
				w.Write(tc.body)
			}))
			err := s.ConfirmManifest(t.Context(), desc)
			if tc.ok && err != nil || !tc.ok && !registry.IsUnserved(err) {
				t.Errorf("confirm: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
