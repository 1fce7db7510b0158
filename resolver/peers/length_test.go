package peers

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/internal/secret"
	"github.com/regmend/regmend/resolver/mirror"
)

// TestPeerContentLengthRefusedBeforeTheBody: a peer whose GET announces
// another length than its HEAD did is refused before any of its body is
// read (it may never send one), with an error naming the peer, the digest
// and both sizes, and the request goes to the next holder.
func TestPeerContentLengthRefusedBeforeTheBody(t *testing.T) {
	tok := newToken(t)
	img := imagetest.Manifest(t, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 1024)
	size := len(img.Data)
	gotGET := make(chan struct{})
	var once sync.Once
	stop := make(chan struct{})
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Content-Digest", img.Desc.Digest.String())
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			return
		}
		once.Do(func() { close(gotGET) })
		w.Header().Set("Content-Length", strconv.Itoa(size+1000))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select { // the body never comes
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(bad.Close)
	t.Cleanup(func() { close(stop) })
	holder := startHolder(t, tok, img)
	// The holder answers only once the bad peer was asked for the body, so
	// the bad peer is the first holder found.
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gotGET:
		case <-r.Context().Done():
			return
		}
		holder.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(good.Close)

	members, err := NewMembership(WithStatic(bad.URL, good.URL))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(members, secret.Static(tok), WithTimeout(5*time.Second), WithIdleTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := imagetest.LocalStore(t)
	var logs imagetest.SyncBuffer
	logger := logrus.New()
	logger.SetOutput(&logs)
	m := mirror.New(cs, allowAll{}, mirror.WithFallback(c))
	fresh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.ServeHTTP(w, r.WithContext(log.WithLogger(r.Context(), logrus.NewEntry(logger))))
	}))
	t.Cleanup(fresh.Close)

	type answer struct {
		resp *http.Response
		body []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, b, err := fetchFrom(t, fresh.URL, http.MethodGet, "manifests", img.Desc.Digest)
		done <- answer{resp, b, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s: the mirror is reading a body whose Content-Length its HEAD contradicted")
	}
	if a.err != nil || a.resp.StatusCode != http.StatusOK || !bytes.Equal(a.body, img.Data) {
		t.Fatalf("GET = %v, %v; want the manifest from the next holder", a.resp, a.err)
	}
	badPeer, _ := ParsePeer(bad.URL)
	for _, want := range []string{badPeer.ID, img.Desc.Digest.String(), "Content-Length " + strconv.Itoa(size+1000), "HEAD said " + strconv.Itoa(size)} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
}
