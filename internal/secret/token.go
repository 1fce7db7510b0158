package secret

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/containerd/errdefs"
)

// Limits on a token's length. A generated token is 64 hex characters (32
// random bytes). The minimum keeps a hand-written token from being guessable;
// the maximum keeps it well inside an HTTP header.
const (
	MinLength = 32
	MaxLength = 1024
)

// Token is a shared secret. The zero Token matches nothing. Its String,
// GoString and Format methods never show the value.
type Token struct {
	value string
	sum   [sha256.Size]byte
}

// Generate returns a new token: 32 bytes from crypto/rand, hex-encoded.
func Generate() (Token, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Token{}, fmt.Errorf("generate token: %w", err)
	}
	return newToken(hex.EncodeToString(b)), nil
}

// Parse reads a token from b, as found in a token file: surrounding
// whitespace (a trailing newline) is dropped. The rest must be MinLength to
// MaxLength visible ASCII characters (no spaces or control characters), so
// that it fits an HTTP header and a TOML string unchanged. Errors wrap
// errdefs.ErrInvalidArgument and never contain the token.
func Parse(b []byte) (Token, error) {
	b = bytes.TrimSpace(b)
	if err := checkToken(b); err != nil {
		return Token{}, err
	}
	return newToken(string(b)), nil
}

// checkToken applies Parse's rules to b, already trimmed.
func checkToken(b []byte) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("token is empty: %w", errdefs.ErrInvalidArgument)
	case len(b) < MinLength:
		return fmt.Errorf("token has %d characters, want at least %d: %w", len(b), MinLength, errdefs.ErrInvalidArgument)
	case len(b) > MaxLength:
		return fmt.Errorf("token has %d characters, want at most %d: %w", len(b), MaxLength, errdefs.ErrInvalidArgument)
	}
	for i, c := range b {
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("token character %d is not visible ASCII (space, control or non-ASCII byte): %w", i+1, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func newToken(v string) Token { return Token{value: v, sum: sha256.Sum256([]byte(v))} }

// IsZero reports whether t holds no token.
func (t Token) IsZero() bool { return t.value == "" }

// Reveal returns the token's value, for writing it where it belongs. Never
// log it.
func (t Token) Reveal() string { return t.value }

// Matches reports whether presented is the token. It compares SHA-256 sums
// with crypto/subtle, so the time taken reveals neither how much of the
// token matched nor its length. The zero Token matches nothing.
func (t Token) Matches(presented string) bool {
	if t.IsZero() {
		return false
	}
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// String returns "[redacted]".
func (t Token) String() string { return "[redacted]" }

// GoString returns "[redacted]", so %#v does not show the token either.
func (t Token) GoString() string { return "[redacted]" }

// Format prints "[redacted]" for every verb.
func (t Token) Format(f fmt.State, _ rune) { f.Write([]byte("[redacted]")) }
