package secret

import (
	"context"
	"net/http"
	"strings"
)

// Credential extracts the token a request presents; ok is false when it
// presents none.
type Credential func(r *http.Request) (presented string, ok bool)

// FromHeader reads the token from the header name. A request that carries
// the header more than once presents none.
func FromHeader(name string) Credential {
	return func(r *http.Request) (string, bool) {
		v := r.Header.Values(name)
		if len(v) != 1 {
			return "", false
		}
		return v[0], true
	}
}

// FromBearer reads the token from "Authorization: Bearer <token>" (the
// scheme in any case, as RFC 7235 allows).
func FromBearer() Credential {
	return func(r *http.Request) (string, bool) {
		v := r.Header.Values("Authorization")
		if len(v) != 1 {
			return "", false
		}
		scheme, tok, ok := strings.Cut(v[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		return strings.TrimLeft(tok, " "), true
	}
}

// Reason says why a request was refused.
type Reason string

// Reasons for a refusal.
const (
	// Missing: the request presented no token.
	Missing Reason = "missing"
	// Wrong: the request presented a token that does not match.
	Wrong Reason = "wrong"
	// Unavailable: the Source had no usable token (RefusalOf gives its error).
	Unavailable Reason = "unavailable"
)

type refusalKey struct{}

type refusal struct {
	reason Reason
	err    error
}

// RefusalOf returns why the request in ctx was refused, for a deny handler:
// the reason, and with Unavailable, the Source's error. ok is false for a
// request Require did not refuse.
func RefusalOf(ctx context.Context) (reason Reason, err error, ok bool) {
	r, ok := ctx.Value(refusalKey{}).(refusal)
	return r.reason, r.err, ok
}

// Require returns a handler that passes a request to next only when the
// credential it presents (from) matches src's current token, compared in
// constant time. Every other request goes to deny, whose request context
// tells why (RefusalOf). deny decides the answer: the mirror's says 404 so
// that containerd treats it as a miss, where a 401 would start containerd's
// auth flow; a peer endpoint's says 401 with WWW-Authenticate: Bearer.
//
// A request that presents no credential, or one no token could be (Parse's
// rules), is refused before src is asked: anyone can send those, and they
// must cost no lock and no look at a token file. When a well-formed token
// does not match and src is a Refresher, src is asked to look again, so a
// rotated token is accepted at its first use.
func Require(src Source, from Credential, next, deny http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := from(r)
		var why refusal
		switch {
		case !ok:
			why = refusal{reason: Missing}
		case checkToken([]byte(presented)) != nil:
			why = refusal{reason: Wrong}
		default:
			ctx := r.Context()
			tok, err := src.Token(ctx)
			if rs, ok := src.(Refresher); ok && (err != nil || !tok.Matches(presented)) {
				tok, err = rs.Refresh(ctx)
			}
			switch {
			case err != nil:
				why = refusal{reason: Unavailable, err: err}
			case !tok.Matches(presented):
				why = refusal{reason: Wrong}
			default:
				next.ServeHTTP(w, r)
				return
			}
		}
		deny.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), refusalKey{}, why)))
	})
}
