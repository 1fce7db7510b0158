package hostsfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Backups. regmend keeps a copy of a hosts.toml only when the copy holds
// something of the user's that the new file does not, and never the mirror
// token:
//
//   - Ensure keeps one when it adds or moves entries (the first install: the
//     user's file before regmend), not when it only sets the token;
//   - Remove keeps one only when regmend's entry held more than Ensure wrote
//     there (the user changed it), since the rest stays byte for byte;
//   - a copy is written only if no hosts.toml.bak.* next to the file already
//     holds the same bytes, so install and uninstall cycles leave one;
//   - in every copy, each value of regmend's header tables (the token, old
//     or current) reads backupPlaceholder; Remove also rewrites older
//     backups that hold one, and deletes none.

// backupPlaceholder stands for the mirror token in backups.
const backupPlaceholder = "<mirror token: regmend keeps none in backups>"

// backupText is what a backup of src holds: src with the mirror token
// replaced by backupPlaceholder: every value in the header tables of
// regmend's marked entries; the header's values in those at mirror's
// address (with header set: the user may have written others there); and
// any other occurrence of token.
func backupText(src []byte, mirror *endpoint, header, token string) []byte {
	out := src
	if d, err := scan(src); err == nil {
		marked, all := regmendKeys(d, nil), regmendKeys(d, mirror)
		var values []span
		for _, s := range d.sections {
			if k := s.hostKey(); !slices.Contains(all, k) || len(s.key) != 3 || !strings.EqualFold(s.key[2], "header") {
				continue
			} else if slices.Contains(marked, k) {
				values = append(values, span{s.headerEnd, s.end})
				continue
			}
			for _, kv := range s.keyvals {
				if header != "" && len(kv.key) == 1 && strings.EqualFold(kv.key[0], header) {
					values = append(values, span{kv.start, kv.end})
				}
			}
		}
		out = rewriteStrings(src, func(at int, _ string) (string, bool) {
			return backupPlaceholder, slices.ContainsFunc(values, func(v span) bool { return at >= v.start && at < v.end })
		})
	}
	return Redact(out, token, backupPlaceholder)
}

// backup keeps content, the previous content of path (backupText), as
// path.bak.<UTC time> (with a numeric suffix if that name is taken), unless
// a backup next to it already holds exactly that; it returns the backup's
// name.
func backup(path string, content []byte, mode fs.FileMode) (string, error) {
	if name, err := sameBackup(path, content); err != nil || name != "" {
		return name, err
	}
	base := path + ".bak." + time.Now().UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return "", err
		}
		_, err = f.Write(content)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(name)
			return "", fmt.Errorf("backup of %s: %w", path, err)
		}
		return name, nil
	}
}

// backups lists the regular files path.bak.* next to path.
func backups(path string) ([]string, error) {
	dir, prefix := filepath.Dir(path), filepath.Base(path)+".bak."
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	return names, nil
}

// sameBackup returns a backup of path that holds exactly content, if any.
func sameBackup(path string, content []byte) (string, error) {
	names, err := backups(path)
	if err != nil {
		return "", err
	}
	for _, name := range names {
		if st, err := os.Stat(name); err != nil || st.Size() != int64(len(content)) {
			continue
		}
		if b, err := os.ReadFile(name); err == nil && bytes.Equal(b, content) {
			return name, nil
		}
	}
	return "", nil
}

// scrubBackups rewrites, in place and keeping its mode, every backup of path
// that holds a mirror token (as backupText finds it), and returns a note for
// each. With dryRun it only says what it would do.
func scrubBackups(path string, mirror *endpoint, header, token string, dryRun bool) ([]string, error) {
	names, err := backups(path)
	if err != nil {
		return nil, err
	}
	var notes []string
	for _, name := range names {
		b, mode, err := readHostsFile(name)
		if err != nil {
			return notes, err
		}
		clean := backupText(b, mirror, header, token)
		if bytes.Equal(clean, b) {
			continue
		}
		verb := "took"
		if dryRun {
			verb = "would take"
		} else if err := writeAtomic(name, clean, mode); err != nil {
			return notes, fmt.Errorf("backup %s: %w", name, err)
		}
		notes = append(notes, fmt.Sprintf("%s the mirror token out of the backup %s", verb, name))
	}
	return notes, nil
}
