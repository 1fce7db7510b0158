package registry_test

import (
	"io"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/registry"
)

// trickle hands out its first slow bytes one at a time, every delay, then
// the rest at full speed: a link or disk that crawls.
type trickle struct {
	io.ReadCloser
	slow  int
	delay time.Duration
}

func (r *trickle) Read(p []byte) (int, error) {
	if r.slow == 0 {
		return r.ReadCloser.Read(p)
	}
	r.slow--
	time.Sleep(r.delay)
	return r.ReadCloser.Read(p[:1])
}

// TestStallGuardCutsATrickle: an upload whose body moves a byte at a time
// is abandoned after the stall timeout, as one that stops, and reported as
// a transient failure; an upload that moves at speed, however long, is not
// cut.
func TestStallGuardCutsATrickle(t *testing.T) {
	cases := []struct {
		name    string
		size    int
		slow    int // bytes sent one per 20ms: 100 take 2s, well past stall
		stall   time.Duration
		stalled bool
	}{
		{name: "trickle", size: 200 << 10, slow: 100, stall: 300 * time.Millisecond, stalled: true},
		// 32 times the 64 KiB a stall timeout must see, with room for a
		// loaded machine.
		{name: "at speed", size: 2 << 20, stall: time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg, remote := plainRegistry(t, 1, registry.WithStallTimeout(tc.stall))
			cs, _, desc := localBlob(t, tc.size)
			open := opener(t.Context(), cs, desc)
			s := session(t, remote, reg.Host, "app")
			start := time.Now()
			_, err := s.Upload(t.Context(), desc, func() (io.ReadCloser, error) {
				rc, err := open()
				return &trickle{ReadCloser: rc, slow: tc.slow, delay: 20 * time.Millisecond}, err
			})
			took := time.Since(start)
			t.Logf("upload of %d bytes took %s: %v", tc.size, took.Round(time.Millisecond), err)
			stall := tc.stall
			if !tc.stalled {
				if err != nil {
					t.Fatalf("upload at speed was cut: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("trickling upload was not cut: it completed after %s, stall timeout %s", took, stall)
			}
			if !registry.IsTransient(err) || !errdefs.IsUnavailable(err) {
				t.Errorf("cut upload: %v, want a transient, unavailable failure", err)
			}
			if took > 2*stall+time.Second {
				t.Errorf("trickling upload cut after %s, want about the stall timeout %s", took, stall)
			}
			if imagetest.Has(t, reg.Base, "app", "blobs", desc.Digest.String()) {
				t.Errorf("registry holds %s from the cut upload", desc.Digest)
			}
		})
	}
}
