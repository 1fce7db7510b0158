package secret

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type failingSource struct{}

func (failingSource) Token(context.Context) (Token, error) {
	return Token{}, errors.New("no token file")
}

func TestRequire(t *testing.T) {
	tok, _ := Generate()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "content") })
	// The mirror's kind of refusal: 404, nothing of the content.
	deny := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason, err, refused := RefusalOf(r.Context())
		if !refused {
			t.Error("deny handler called without a refusal in the context")
		}
		w.Header().Set("X-Reason", string(reason))
		if err != nil {
			w.Header().Set("X-Err", err.Error())
		}
		http.Error(w, "not found", http.StatusNotFound)
	})
	for _, tc := range []struct {
		name    string
		src     Source
		from    Credential
		headers map[string][]string
		status  int
		reason  Reason
	}{
		{"header: right token", Static(tok), FromHeader("X-Token"), map[string][]string{"X-Token": {tok.Reveal()}}, 200, ""},
		{"header: lower-case name on the wire", Static(tok), FromHeader("X-Token"), map[string][]string{"x-token": {tok.Reveal()}}, 200, ""},
		{"header: missing", Static(tok), FromHeader("X-Token"), nil, 404, Missing},
		{"header: wrong", Static(tok), FromHeader("X-Token"), map[string][]string{"X-Token": {strings.Repeat("0", 64)}}, 404, Wrong},
		{"header: empty", Static(tok), FromHeader("X-Token"), map[string][]string{"X-Token": {""}}, 404, Wrong},
		{"header: twice", Static(tok), FromHeader("X-Token"), map[string][]string{"X-Token": {tok.Reveal(), tok.Reveal()}}, 404, Missing},
		{"header: token as bearer", Static(tok), FromHeader("X-Token"), map[string][]string{"Authorization": {"Bearer " + tok.Reveal()}}, 404, Missing},
		{"bearer: right", Static(tok), FromBearer(), map[string][]string{"Authorization": {"Bearer " + tok.Reveal()}}, 200, ""},
		{"bearer: scheme in lower case", Static(tok), FromBearer(), map[string][]string{"Authorization": {"bearer " + tok.Reveal()}}, 200, ""},
		{"bearer: basic", Static(tok), FromBearer(), map[string][]string{"Authorization": {"Basic " + tok.Reveal()}}, 404, Missing},
		{"bearer: wrong", Static(tok), FromBearer(), map[string][]string{"Authorization": {"Bearer x"}}, 404, Wrong},
		{"no usable token refuses even the right one", failingSource{}, FromHeader("X-Token"), map[string][]string{"X-Token": {tok.Reveal()}}, 404, Unavailable},
		{"zero token refuses all", Static(Token{}), FromHeader("X-Token"), map[string][]string{"X-Token": {""}}, 404, Wrong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(Require(tc.src, tc.from, ok, deny))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/app/blobs/x", nil)
			for k, vs := range tc.headers {
				req.Header[k] = vs // as written, like containerd's per-host headers
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				if strings.Contains(string(body), "content") {
					t.Errorf("refusal carries the content: %q", body)
				}
				if got := Reason(resp.Header.Get("X-Reason")); got != tc.reason {
					t.Errorf("reason %q, want %q", got, tc.reason)
				}
				if tc.reason == Unavailable && resp.Header.Get("X-Err") == "" {
					t.Error("no error for an unavailable token")
				}
			}
		})
	}
}

// countingSource counts the times a guard asks for the token.
type countingSource struct {
	src Source
	n   atomic.Int32
}

func (c *countingSource) Token(ctx context.Context) (Token, error) {
	c.n.Add(1)
	return c.src.Token(ctx)
}

// TestRequireRefusesWithoutLookingAtTheToken: a request with no credential,
// or one no token could be, is refused before the Source is asked, so
// anyone on the network can send them without costing a lock and a stat of
// the token file each; a request with the right token costs no stat either
// while the last look at the file is fresh.
func TestRequireRefusesWithoutLookingAtTheToken(t *testing.T) {
	tok, _ := Generate()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	deny := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	refused := [][]string{
		nil,                       // no Authorization
		{"Basic " + tok.Reveal()}, // another scheme
		{"Bearer"},                // no token
		{"Bearer short"},          // under MinLength
		{"Bearer " + strings.Repeat("x", MaxLength+1)},
		{"Bearer " + strings.Repeat("\x01", MinLength)},      // not visible ASCII
		{"Bearer " + tok.Reveal(), "Bearer " + tok.Reveal()}, // twice
	}
	do := func(t *testing.T, h http.Handler, auth []string) int {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		if auth != nil {
			req.Header["Authorization"] = auth
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}

	t.Run("any source", func(t *testing.T) {
		src := &countingSource{src: Static(tok)}
		h := Require(src, FromBearer(), ok, deny)
		for range 10 {
			for _, auth := range refused {
				if code := do(t, h, auth); code != http.StatusUnauthorized {
					t.Fatalf("Authorization %q: %d, want 401", auth, code)
				}
			}
		}
		if n := src.n.Load(); n != 0 {
			t.Errorf("%d refused requests asked the Source %d times, want 0", 10*len(refused), n)
		}
	})
	t.Run("token file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "token")
		writeToken(t, p, tok.Reveal(), 0o600)
		f, err := ReadFile(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		src := NewFileSource(f)
		src.recheck = time.Hour // however slow the machine, the last look stays fresh
		var stats atomic.Int32
		src.stat = func(name string) (os.FileInfo, error) { stats.Add(1); return os.Stat(name) }
		h := Require(src, FromBearer(), ok, deny)
		for range 10 {
			for _, auth := range refused {
				do(t, h, auth)
			}
			if code := do(t, h, []string{"Bearer " + tok.Reveal()}); code != http.StatusOK {
				t.Fatalf("the right token: %d", code)
			}
		}
		if n := stats.Load(); n != 0 {
			t.Errorf("%d refused and 10 accepted requests took %d stats of the token file, want 0", 10*len(refused), n)
		}
	})
}
