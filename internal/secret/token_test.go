package secret

import (
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestGenerate(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate()
	if len(a.Reveal()) != 64 || strings.Trim(a.Reveal(), "0123456789abcdef") != "" {
		t.Errorf("generated token is not 64 hex characters: %d", len(a.Reveal()))
	}
	if a.Reveal() == b.Reveal() {
		t.Error("two generated tokens are equal")
	}
	if _, err := Parse([]byte(a.Reveal())); err != nil {
		t.Errorf("a generated token does not parse: %v", err)
	}
}

func TestParse(t *testing.T) {
	good := strings.Repeat("a1", 16)
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{name: "exact", in: good, want: good, ok: true},
		{name: "trailing newline", in: good + "\n", want: good, ok: true},
		{name: "surrounding whitespace and CRLF", in: " \t" + good + "\r\n\n", want: good, ok: true},
		{name: "printable punctuation", in: good + "-._~+/=", want: good + "-._~+/=", ok: true},
		{name: "empty"},
		{name: "only whitespace", in: " \n\t\n"},
		{name: "too short", in: good[:31]},
		{name: "too long", in: strings.Repeat("a", MaxLength+1)},
		{name: "inner space", in: good + " " + good},
		{name: "inner newline", in: good + "\n" + good},
		{name: "control character", in: good + "\x00"},
		{name: "non-ASCII", in: good + "é"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse([]byte(tc.in))
			if !tc.ok {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want invalid argument", err)
				}
				if s := strings.TrimSpace(tc.in); s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("error shows the token: %v", err)
				}
				return
			}
			if err != nil || tok.Reveal() != tc.want {
				t.Fatalf("Parse = %q, %v; want %q", tok.Reveal(), err, tc.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tok, _ := Parse([]byte(strings.Repeat("ab", 32)))
	for _, tc := range []struct {
		presented string
		want      bool
	}{
		{strings.Repeat("ab", 32), true},
		{strings.Repeat("ab", 31) + "ac", false},
		{strings.Repeat("ab", 32) + "a", false},
		{strings.Repeat("ab", 31), false},
		{"", false},
	} {
		if got := tok.Matches(tc.presented); got != tc.want {
			t.Errorf("Matches(%q) = %v, want %v", tc.presented, got, tc.want)
		}
	}
	if (Token{}).Matches("") {
		t.Error("the zero token matches the empty string")
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	tok, _ := Generate()
	s := struct{ T Token }{tok}
	for _, out := range []string{
		fmt.Sprint(tok), fmt.Sprintf("%v %s %q %x %d %#v %+v", tok, tok, tok, tok, tok, tok, tok),
		fmt.Sprintf("%v %+v %#v", s, s, s), fmt.Errorf("wrapped %v", tok).Error(),
	} {
		if strings.Contains(out, tok.Reveal()) || strings.Contains(out, tok.Reveal()[:16]) {
			t.Errorf("formatted output shows the token: %s", out)
		}
	}
}
