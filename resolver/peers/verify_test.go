package peers

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestCopyVerified(t *testing.T) {
	data := make([]byte, 3*copyBuf+123)
	rand.Read(data)
	d := digest.FromBytes(data)
	size := int64(len(data))
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	for _, c := range []struct {
		name       string
		src        []byte
		start, end int64
		wantErr    error
	}{
		{"whole", data, 0, size - 1, nil},
		{"from an offset", data, 1000, size - 1, nil},
		{"a middle range", data, copyBuf - 5, 2*copyBuf + 7, nil},
		{"the first byte", data, 0, 0, nil},
		{"corrupt", bad, 0, size - 1, errMismatch},
		{"corrupt after the range", bad, 10, 20, errMismatch},
		{"short", data[:size-1], 0, size - 1, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := copyVerified(&out, bytes.NewReader(c.src), d, size, c.start, c.end)
			want := data[c.start : c.end+1]
			switch {
			case c.name == "short":
				if err == nil {
					t.Fatal("short body verified")
				}
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(out.Bytes(), want) || n != int64(len(want)):
				t.Fatalf("wrote %d bytes, want %d", n, len(want))
			}
			if err != nil && int64(out.Len()) >= int64(len(want)) {
				t.Errorf("failed copy wrote %d of the range's %d bytes: the whole range got through", out.Len(), len(want))
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		h          string
		start, end int64
		partial    bool
	}{
		{"", 0, 99, false},
		{"bytes=10-", 10, 99, true},
		{"bytes=10-19", 10, 19, true},
		{"bytes=90-500", 90, 99, true},
		{"bytes=-5", 95, 99, true},
		{"bytes=-500", 0, 99, true},
		{"bytes=100-", 0, 99, false},
		{"bytes=5-2", 0, 99, false},
		{"bytes=0-1,5-6", 0, 99, false},
		{"items=0-1", 0, 99, false},
	} {
		s, e, p := parseRange(c.h, 100)
		if s != c.start || e != c.end || p != c.partial {
			t.Errorf("parseRange(%q) = %d, %d, %v; want %d, %d, %v", c.h, s, e, p, c.start, c.end, c.partial)
		}
	}
}
