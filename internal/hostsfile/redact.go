package hostsfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Redact returns content, a hosts.toml, with token replaced by placeholder
// wherever it is: in every string value that holds it, whatever TOML form
// the value takes (basic or literal, escaped or not: a token holding `"` or
// `\` is written escaped), and in the text outside values (comments), as
// written raw or escaped. A string value holding the token is written anew,
// as a basic string, so the result still parses. An empty token leaves
// content as it is. Use it before showing content to anyone.
func Redact(content []byte, token, placeholder string) []byte {
	if token == "" {
		return content
	}
	out := rewriteStrings(content, func(_ int, s string) (string, bool) {
		return strings.ReplaceAll(s, token, placeholder), strings.Contains(s, token)
	})
	q := quote(token)
	for _, form := range []string{token, q[1 : len(q)-1]} {
		out = bytes.ReplaceAll(out, []byte(form), []byte(placeholder))
	}
	return out
}

// rewriteStrings returns src with each string value for which f gives a
// replacement written as that replacement, a TOML basic string; at is the
// value's offset in src. A document that does not parse comes back as it is.
func rewriteStrings(src []byte, f func(at int, s string) (string, bool)) []byte {
	type change struct {
		start, end int
		text       string
	}
	var changes []change
	var walk func(n *unstable.Node)
	walk = func(n *unstable.Node) {
		switch n.Kind {
		case unstable.String:
			at := int(n.Raw.Offset)
			if v, ok := f(at, string(n.Data)); ok {
				changes = append(changes, change{at, at + int(n.Raw.Length), quote(v)})
			}
		case unstable.KeyValue:
			walk(n.Value())
		case unstable.Array, unstable.InlineTable:
			for it := n.Children(); it.Next(); {
				walk(it.Node())
			}
		}
	}
	var p unstable.Parser
	p.Reset(src)
	for p.NextExpression() {
		if e := p.Expression(); e.Kind == unstable.KeyValue {
			walk(e)
		}
	}
	if p.Error() != nil || len(changes) == 0 {
		return src
	}
	var out []byte
	prev := 0
	for _, c := range changes { // in document order
		out = append(append(out, src[prev:c.start]...), c.text...)
		prev = c.end
	}
	return append(out, src[prev:]...)
}

// TokenHolders returns the hosts.toml files of hostsDir
// (<hostsDir>/<dir>/hosts.toml) that hold token, in any form Redact finds.
// A caller deletes a token file only when none does.
func TokenHolders(hostsDir, token string) ([]string, error) {
	if token == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(hostsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var holders []string
	for _, e := range entries {
		p := filepath.Join(hostsDir, e.Name(), "hosts.toml")
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		} else if err != nil {
			return nil, err
		}
		if !bytes.Equal(Redact(b, token, ""), b) {
			holders = append(holders, p)
		}
	}
	return holders, nil
}
