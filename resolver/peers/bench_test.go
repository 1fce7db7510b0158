package peers

import (
	"io"
	"net/http"
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
)

// BenchmarkServeFromPeer: an 8 MiB blob from a holder's peer endpoint,
// directly, and through a fresh node's mirror that fetches it from the
// holder and verifies it (the cost of the second hop and the hash).
func BenchmarkServeFromPeer(b *testing.B) {
	tok := newToken(b)
	img := imagetest.Manifest(b, imagetest.OCI, imagetest.Platform("linux", "amd64"), 1, 8<<20)
	holder := startHolder(b, tok, img)
	fresh, _ := startFresh(b, tok, holder.srv.URL)
	layer := img.Layers[0]
	for _, c := range []struct {
		name, base string
		auth       bool
	}{{"holder endpoint", holder.srv.URL, true}, {"fresh node's mirror", fresh.URL, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(layer.Desc.Size)
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, c.base+"/v2/"+testRepo+"/blobs/"+layer.Desc.Digest.String()+"?ns="+testRegistry, nil)
				if c.auth {
					req.Header.Set("Authorization", "Bearer "+tok.Reveal())
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || n != layer.Desc.Size {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
			}
		})
	}
}
