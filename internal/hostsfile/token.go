package hostsfile

import (
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
)

// WithMirrorToken makes Ensure write a per-host header into regmend's
// [host."<mirror>".header] table, name = ["value"], which containerd sends
// with every request to the mirror. An existing value is replaced in place
// (rotation); nothing else in the file moves. A file that holds the token is
// written with mode 0600: an existing file keeps its owner bits and loses
// any group and other bits, and a comment above the token records the mode
// it had, which Remove puts back. value must be a valid header value; it
// never appears in errors, notes or backups. Without this option, Ensure
// leaves any header regmend's entry has as it is. Given to Remove, value is
// taken out of backups wherever it is.
func WithMirrorToken(header, value string) Option {
	return func(o *options) { o.header, o.token = header, value }
}

// checkToken checks that containerd, having loaded hosts, sends exactly
// t.token as the header t.header to the mirror (nothing to check without a
// token).
func checkToken(hosts []docker.RegistryHost, t target) error {
	if t.header == "" {
		return nil
	}
	for _, h := range hosts {
		if !hostEndpoint(h).sameHost(t.mirror) {
			continue
		}
		// containerd keeps header names as written in the file; the
		// server reads them case-insensitively.
		var values []string
		for k, v := range h.Header {
			if strings.EqualFold(k, t.header) {
				values = append(values, v...)
			}
		}
		if len(values) != 1 || values[0] != t.token {
			return fmt.Errorf("the mirror's %s header does not carry exactly the mirror token", t.header)
		}
		return nil
	}
	return fmt.Errorf("the mirror is not among the hosts")
}

// setHeader returns src with t.header set to t.token in the mirror's
// [host."<key>".header] table: the value of an existing key (in any case) is
// replaced in place; otherwise a key line is added at the end of that table,
// or the table is added right after the mirror's main table. src must hold
// the mirror's main table (edit puts it there).
func setHeader(src []byte, t target, eol string) ([]byte, error) {
	d, err := scan(src)
	if err != nil {
		return nil, err
	}
	var mainSec, hdrSec *section
	for i := range d.sections {
		s := &d.sections[i]
		k := s.hostKey()
		if k == "" {
			continue
		}
		if ep, err := parseEndpoint(k); err != nil || !ep.same(t.mirror) {
			continue
		}
		switch {
		case s.main():
			mainSec = s
		case len(s.key) == 3 && strings.EqualFold(s.key[2], "header"):
			hdrSec = s
		}
	}
	if mainSec == nil {
		return nil, fmt.Errorf("the mirror's [host] table is missing")
	}
	if slices.ContainsFunc(mainSec.keyvals, func(kv keyval) bool { return strings.EqualFold(kv.key[0], "header") }) {
		return nil, fmt.Errorf("[host.%s] sets its headers inline; write them as a [host.%s.header] table so that regmend can add its token: %w",
			quote(mainSec.hostKey()), quote(mainSec.hostKey()), errdefs.ErrFailedPrecondition)
	}
	line := quote(t.header) + " = [" + quote(t.token) + "]"
	rec := ""
	if t.record != "" {
		rec = "  " + t.record + eol
	}
	splice := func(at, end int, text string) []byte {
		out := append(slices.Clone(src[:at]), text...)
		return append(out, src[end:]...)
	}
	if hdrSec == nil {
		at := ownEnd(src, mainSec)
		return splice(at, at, eol+"[host."+quote(mainSec.hostKey())+".header]"+eol+rec+"  "+line+eol), nil
	}
	var found []keyval
	for _, kv := range hdrSec.keyvals {
		if len(kv.key) == 1 && strings.EqualFold(kv.key[0], t.header) {
			found = append(found, kv)
		}
	}
	switch len(found) {
	case 0:
		at := ownEnd(src, hdrSec)
		text := rec + "  " + line + eol
		if at > 0 && src[at-1] != '\n' { // the file ends without a newline
			text = eol + text
		}
		return splice(at, at, text), nil
	case 1:
		at := lineStart(src, found[0].start)
		return splice(at, found[0].end, rec+string(src[at:found[0].start])+line), nil
	default:
		return nil, fmt.Errorf("[host.%s.header] sets %s more than once: %w", quote(hdrSec.hostKey()), t.header, errdefs.ErrFailedPrecondition)
	}
}

// ownEnd is the end of s's own lines: just past the line of its last
// key/value (or of its header), before any blank or comment lines after it.
func ownEnd(src []byte, s *section) int {
	if n := len(s.keyvals); n > 0 {
		return lineEnd(src, s.keyvals[n-1].end)
	}
	return s.headerEnd
}

// unchanged is Ensure's answer for a file whose content is already right. A
// file holding the mirror token that group or others may read loses those
// permission bits (Action Updated, without a backup: the content is the same).
func unchanged(res Result, src []byte, mode fs.FileMode, hosts []docker.RegistryHost, t target, dryRun bool) (Result, error) {
	res.Action, res.Content, res.Hosts = Unchanged, src, describe(hosts)
	if t.token == "" || mode&0o077 == 0 {
		return res, nil
	}
	res.Action = Updated
	res.Notes = append(res.Notes, fmt.Sprintf("permissions tightened from %04o to %04o: the file holds the mirror token", mode, mode&^0o077))
	if dryRun {
		return res, nil
	}
	if err := os.Chmod(res.Path, mode&^0o077); err != nil {
		return Result{}, err
	}
	return res, nil
}
