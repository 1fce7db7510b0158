package hostsfile

import (
	"bytes"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyval is a top-level key/value expression of a TOML document (top level
// meaning: not inside an array or inline table).
type keyval struct {
	key        []string
	start, end int // byte range of `key = value`
}

// section is one table of a TOML document: its header line up to the next
// table header. Comment lines directly above the header (no blank line in
// between) belong to the section, so they move with it.
type section struct {
	key        []string
	array      bool // [[…]] rather than […]
	start, end int  // byte range, leading comments included
	header     int  // offset of the header line
	headerEnd  int  // offset just past the header line's newline
	keyvals    []keyval
}

// hostKey returns the host key of a [host."<key>"…] section, the way
// containerd's getSortedHosts reads it, or "" for other sections.
func (s *section) hostKey() string {
	if s.array || len(s.key) < 2 || s.key[0] != "host" {
		return ""
	}
	return s.key[1]
}

// main reports whether s is the [host."<key>"] table itself rather than one of
// its sub-tables such as [host."<key>".header].
func (s *section) main() bool { return s.hostKey() != "" && len(s.key) == 2 }

// document is a TOML document cut into sections.
type document struct {
	src      []byte
	sections []section
}

// scan splits src into sections. It fails on a TOML syntax error.
func scan(src []byte) (*document, error) {
	p := unstable.Parser{KeepComments: true}
	p.Reset(src)
	d := &document{src: src}
	lastComment := -1 // start of the run of comment lines directly above
	prevLineEnd := -1 // end (after newline) of the last comment line
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Comment:
			start := lineStart(src, int(e.Raw.Offset))
			if lastComment < 0 || prevLineEnd != start {
				lastComment = start
			}
			prevLineEnd = lineEnd(src, int(e.Raw.Offset+e.Raw.Length))
			continue
		case unstable.Table, unstable.ArrayTable:
			key, off := keyParts(e.Key())
			hdr := lineStart(src, off)
			start := hdr
			if lastComment >= 0 && prevLineEnd == hdr {
				start = lastComment
			}
			if n := len(d.sections); n > 0 {
				d.sections[n-1].end = start
			}
			d.sections = append(d.sections, section{
				key: key, array: e.Kind == unstable.ArrayTable,
				start: start, end: len(src), header: hdr, headerEnd: lineEnd(src, off),
			})
		case unstable.KeyValue:
			key, _ := keyParts(e.Key())
			if n := len(d.sections); n > 0 {
				s := &d.sections[n-1]
				s.keyvals = append(s.keyvals, keyval{key: key,
					start: int(e.Raw.Offset), end: int(e.Raw.Offset + e.Raw.Length)})
			}
		}
		lastComment = -1
	}
	if err := p.Error(); err != nil {
		return nil, err
	}
	return d, nil
}

// keyParts returns the (unescaped) parts of a dotted key and the offset of
// its first part.
func keyParts(it unstable.Iterator) ([]string, int) {
	var parts []string
	off := -1
	for it.Next() {
		n := it.Node()
		if off < 0 {
			off = int(n.Raw.Offset)
		}
		parts = append(parts, string(n.Data))
	}
	return parts, off
}

func lineStart(src []byte, off int) int {
	return bytes.LastIndexByte(src[:off], '\n') + 1
}

func lineEnd(src []byte, off int) int {
	if i := bytes.IndexByte(src[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(src)
}

// hostOrder returns the host keys in the order containerd's getSortedHosts
// finds them: every [host."<key>"…] table header, skipping a header whose key
// repeats the one just before it.
func (d *document) hostOrder() []string {
	var order []string
	prev := ""
	for i := range d.sections {
		s := &d.sections[i]
		if s.array || len(s.key) < 2 || s.key[0] != "host" || s.key[1] == prev {
			continue
		}
		prev = s.key[1]
		order = append(order, prev)
	}
	return order
}

// capabilities finds the capabilities key/value of a main host section.
func (s *section) capabilities() (keyval, bool) {
	for _, kv := range s.keyvals {
		if len(kv.key) == 1 && strings.EqualFold(kv.key[0], "capabilities") {
			return kv, true
		}
	}
	return keyval{}, false
}
