package hostsfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// Removed means Remove deleted hosts.toml: regmend had created it and nothing
// else was left in it.
const Removed Action = "removed"

// Remove takes regmend's entry out of <hostsDir>/<registry>/hosts.toml,
// undoing Ensure. regmend's entry is every [host] table with the comment
// Ensure writes above it ("# regmend: a fallback mirror, …"), whatever its
// address, and, when mirrorURL is not empty, any other [host] table at that
// address too:
//
//   - those tables and their sub-tables (the token header) go, with the
//     comment lines directly above them;
//   - the registry's own [host] entry that Ensure added goes too, but only
//     while it is still exactly the text Ensure wrote (ask: a changed one is
//     the user's now, and a note says it was kept);
//   - the one line ending Ensure put between the user's text and its own is
//     dropped, so installing then removing gives the original bytes back;
//   - a file that regmend created, from which nothing but the top it writes
//     for a new file would remain, is deleted rather than left half-empty;
//   - the file gets back the mode Ensure recorded when it took group and
//     other permissions away for the token.
//
// Everything else stays byte for byte. A file without regmend's entry, or no
// file at all, is left alone (Action Unchanged), so Remove is idempotent.
// The new content must load with containerd's config package. A backup is
// kept only if regmend's entry held more than Ensure wrote there, and every
// backup next to the file that holds a mirror token is rewritten without it
// (see backups.go). A file that containerd cannot load is refused with an
// error wrapping errdefs.ErrFailedPrecondition; bad arguments wrap
// errdefs.ErrInvalidArgument. Options: WithDryRun, and WithMirrorToken,
// whose value is then taken out of backups wherever it is.
func Remove(ctx context.Context, hostsDir, registry, mirrorURL string, opts ...Option) (Result, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := ValidateRegistry(registry); err != nil {
		return Result{}, err
	}
	var mirror *endpoint
	if mirrorURL != "" {
		ep, _, err := parseMirror(mirrorURL)
		if err != nil {
			return Result{}, err
		}
		mirror = &ep
	}
	if hostsDir == "" {
		return Result{}, fmt.Errorf("hosts directory not set: %w", errdefs.ErrInvalidArgument)
	}
	regDir, _, err := registryDir(hostsDir, registry)
	if err != nil {
		return Result{}, err
	}
	res := Result{Path: filepath.Join(regDir, "hosts.toml"), Action: Unchanged}
	refuse := func(format string, args ...any) (Result, error) {
		return Result{}, fmt.Errorf("%s: "+format+": %w", append(append([]any{res.Path}, args...), errdefs.ErrFailedPrecondition)...)
	}
	scrub := func(res Result) (Result, error) {
		notes, err := scrubBackups(res.Path, mirror, o.header, o.token, o.dryRun)
		res.Notes = append(res.Notes, notes...)
		return res, err
	}
	src, mode, err := readHostsFile(res.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return scrub(res)
	} else if err != nil {
		return Result{}, err
	}
	hosts, err := loadHosts(ctx, hostsDir, regDir, registry, src)
	if err != nil {
		return refuse("refusing to modify: %v", err)
	}
	found, err := regmendText(src, target{registry: registry}, mirror)
	if err != nil {
		return refuse("refusing to modify: %v", err)
	}
	res.Content, res.Hosts, res.Notes = src, describe(hosts), found.notes
	if len(found.cuts) == 0 {
		return scrub(res)
	}
	out := cutOut(src, found.cuts, eolOf(src))
	res.Action, res.Content, res.Hosts = Updated, out, nil
	if createdByRegmend(out, regDir, registry) {
		res.Action, res.Content = Removed, nil
	} else {
		hosts, err := loadHosts(ctx, hostsDir, regDir, registry, out)
		if err != nil {
			return refuse("refusing to write: the new content fails containerd's check: %v", err)
		}
		res.Hosts = describe(hosts)
		if d, err := scan(out); err == nil && found.recorded && len(regmendKeys(d, nil)) == 0 && found.mode != mode {
			res.Notes = append(res.Notes, fmt.Sprintf("mode %04o put back, as before the mirror token", found.mode))
			mode = found.mode
		}
	}
	if o.dryRun {
		return scrub(res)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if !found.exact { // the user added to regmend's entry: keep that
		if res.Backup, err = backup(res.Path, backupText(src, mirror, o.header, o.token), mode); err != nil {
			return Result{}, err
		}
	}
	if res.Action == Removed {
		err = os.Remove(res.Path)
	} else {
		err = writeAtomic(res.Path, out, mode)
	}
	if err != nil {
		return Result{}, err
	}
	return scrub(res)
}

// span is a byte range of a document.
type span struct{ start, end int }

// regmendFound is what regmendText finds.
type regmendFound struct {
	cuts     []span
	notes    []string
	exact    bool        // the mirror's text is only what Ensure writes (ownEntry)
	mode     fs.FileMode // the mode recorded in it, if recorded
	recorded bool
}

// regmendText finds what Ensure added to src: regmend's entries (by their
// marker, or at mirror's address), and the registry's [host] entry while it
// is exactly as Ensure wrote it.
func regmendText(src []byte, t target, mirror *endpoint) (regmendFound, error) {
	d, err := scan(src)
	if err != nil {
		return regmendFound{}, err
	}
	keys := regmendKeys(d, mirror)
	if len(keys) == 0 {
		return regmendFound{}, nil
	}
	var cfg fileFields
	if err := toml.Unmarshal(src, &cfg); err != nil {
		return regmendFound{}, err
	}
	f := regmendFound{exact: true}
	for _, k := range keys {
		var pieces [][]byte
		for i := range d.sections {
			if s := &d.sections[i]; s.hostKey() == k {
				start, _ := textStart(src, s, marker)
				f.cuts = append(f.cuts, span{start, s.end})
				pieces = append(pieces, src[start:s.end])
				if !f.recorded {
					f.mode, f.recorded = recordedMode(src[start:s.end])
				}
			}
		}
		f.exact = f.exact && ownEntry(pieces, k, cfg.Hosts[k], eolOf(src))
	}
	// The scheme Ensure was given is not recorded: try each; the text
	// must match exactly, so at most one can.
	for _, scheme := range []string{"", "http", "https"} {
		t.defaultKey, t.defaultNoTLSV = defaultServer(t.registry, scheme)
		regKey, isDefault, err := serverKey(cfg.Server, t)
		if err != nil {
			return regmendFound{}, err
		}
		blk, err := registryBlock(regKey, cfg.hostFields, isDefault, isDefault && t.defaultNoTLSV, eolOf(src))
		if err != nil {
			continue // a top-level value Ensure could not have copied
		}
		for i, s := range d.sections {
			start, ours := textStart(src, &s, string(blk))
			if !s.main() || s.hostKey() != regKey || !ours {
				continue
			}
			end := s.end // through the sub-tables that follow it
			for j := i + 1; j < len(d.sections) && d.sections[j].hostKey() == regKey && !d.sections[j].main(); j++ {
				end = d.sections[j].end
			}
			if bytes.Equal(bytes.TrimRight(src[start:end], " \t\r\n"), bytes.TrimRight(blk, " \t\r\n")) {
				f.cuts = append(f.cuts, span{start, end})
			} else if !slices.Contains(f.notes, keptNote(regKey)) {
				f.notes = append(f.notes, keptNote(regKey))
			}
		}
	}
	return f, nil
}

// textStart is where the text regmend wrote for section s starts: at the
// line among the comments directly above its header that equals the first
// line of block (what Ensure writes there; found is then true); else at the
// first of those comments, which are about the section. Comments above
// regmend's own belong to the user: a file that ends without a newline puts
// its last comment line directly above regmend's text.
func textStart(src []byte, s *section, block string) (start int, found bool) {
	first, _, _ := strings.Cut(block, "\n")
	first = strings.TrimSuffix(first, "\r")
	for at := s.start; at < s.header; at = lineEnd(src, at) {
		line := strings.TrimRight(string(src[at:lineEnd(src, at)]), "\r\n")
		if line == first {
			return at, true
		}
	}
	return s.start, false
}

func keptNote(key string) string {
	return fmt.Sprintf("kept [host.%s]: regmend added it, but it was changed since; remove it by hand if it is not wanted", quote(key))
}

// cutOut returns src without the cuts. Cuts apart only by blank space are
// joined; when the last one reaches the end of the file (blank space after
// it included), the line ending Ensure put before its text goes too.
func cutOut(src []byte, cuts []span, eol string) []byte {
	slices.SortFunc(cuts, func(a, b span) int { return a.start - b.start })
	var merged []span
	for _, c := range cuts {
		if n := len(merged); n > 0 && len(bytes.TrimSpace(src[merged[n-1].end:max(c.start, merged[n-1].end)])) == 0 {
			merged[n-1].end = max(merged[n-1].end, c.end)
			continue
		}
		merged = append(merged, c)
	}
	last := &merged[len(merged)-1]
	if len(bytes.TrimSpace(src[last.end:])) == 0 {
		last.end = len(src)
	}
	var out []byte
	prev := 0
	for _, c := range merged {
		out = append(out, src[prev:c.start]...)
		prev = c.end
	}
	if prev == len(src) {
		return bytes.TrimSuffix(out, []byte(eol))
	}
	return append(out, src[prev:]...)
}

// createdByRegmend reports whether rest is exactly what Ensure writes at the
// top of a file it creates for registry (with any server scheme option).
func createdByRegmend(rest []byte, regDir, registry string) bool {
	for _, scheme := range []string{"", "http", "https"} {
		t := target{registry: registry}
		t.defaultKey, t.defaultNoTLSV = defaultServer(registry, scheme)
		if top, err := newFile(regDir, t); err == nil && bytes.Equal(top, rest) {
			return true
		}
	}
	return false
}
