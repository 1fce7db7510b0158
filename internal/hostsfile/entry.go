package hostsfile

import (
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// marker is the first line of the text Ensure writes for regmend's entry
// (mirrorBlock). Remove finds regmend's entry by it, whatever the mirror's
// address.
const marker = "# regmend: a fallback mirror, tried only after the registry said 404."

// regmendKeys returns the host keys of regmend's entries in d: every
// [host."<key>"] table with the marker among the comments directly above
// it, and, with mirror set, every host key at the mirror's address.
func regmendKeys(d *document, mirror *endpoint) []string {
	var keys []string
	for i := range d.sections {
		s := &d.sections[i]
		k := s.hostKey()
		if k == "" || slices.Contains(keys, k) {
			continue
		}
		if _, marked := textStart(d.src, s, marker); s.main() && marked {
			keys = append(keys, k)
		} else if ep, err := parseEndpoint(k); mirror != nil && err == nil && ep.same(*mirror) {
			keys = append(keys, k)
		}
	}
	return keys
}

// modeRecordRE finds the comment Ensure writes into regmend's header table
// when it takes group and other permissions away from an existing file for
// the token (modeRecord).
var modeRecordRE = regexp.MustCompile(`(?m)^[ \t]*# regmend: hosts\.toml was mode (0[0-7]{3}) before`)

// modeRecord is that comment: the file's mode before, which Remove puts back.
func modeRecord(mode fs.FileMode) string {
	return fmt.Sprintf("# regmend: hosts.toml was mode %04o before this token; hosts --remove restores it.", mode.Perm())
}

// recordedMode returns the mode the first record in text gives.
func recordedMode(text []byte) (fs.FileMode, bool) {
	m := modeRecordRE.FindSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseUint(string(m[1]), 8, 32)
	if err != nil {
		return 0, false
	}
	return fs.FileMode(v).Perm(), true
}

// ownEntry reports whether pieces, the text of regmend's entry k section by
// section, is only what Ensure writes there: the mirror's table as
// mirrorBlock, and at most a header table with one header of one value (the
// token) and the mode record. Cutting such text loses nothing of the user's.
func ownEntry(pieces [][]byte, k string, h hostFields, eol string) bool {
	trim := func(s string) string { return strings.TrimRight(s, " \t\r\n") }
	if len(pieces) == 0 || len(pieces) > 2 || trim(string(pieces[0])) != trim(mirrorBlock(k, eol)) {
		return false
	}
	if len(pieces) == 1 {
		return true
	}
	if len(h.Header) != 1 {
		return false
	}
	for name, v := range h.Header {
		vs, ok := v.([]any)
		if !ok || len(vs) != 1 {
			return false
		}
		s, ok := vs[0].(string)
		if !ok {
			return false
		}
		var kept strings.Builder
		for _, line := range strings.SplitAfter(string(pieces[1]), "\n") {
			if !modeRecordRE.MatchString(line) {
				kept.WriteString(line)
			}
		}
		want := "[host." + quote(k) + ".header]" + eol + "  " + quote(name) + " = [" + quote(s) + "]"
		return trim(kept.String()) == want
	}
	return false
}
