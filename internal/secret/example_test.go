package secret_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/regmend/regmend/internal/secret"
)

// A peer endpoint takes the cluster token as a bearer token and answers 401;
// the mirror would use FromHeader and a deny handler that answers 404.
func ExampleRequire() {
	tok, _ := secret.Generate()
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "served") })
	deny := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="regmend"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	h := secret.Require(secret.Static(tok), secret.FromBearer(), api, deny)

	for _, auth := range []string{"", "Bearer " + tok.Reveal()} {
		req := httptest.NewRequest(http.MethodGet, "/peer/blobs/sha256:abc", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	fmt.Println(tok) // never shows the value
	// Output:
	// 401
	// 200
	// [redacted]
}
