package deny

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/imageref"
)

// Denier reports whether content is denied, and by which entry.
type Denier interface {
	Denied(registry, repo string, d digest.Digest) (entry string, denied bool)
}

var _ Denier = (*List)(nil)

// List is a parsed deny file. A nil *List denies nothing. It is never
// changed once parsed, so it is safe for concurrent use.
type List struct {
	entries []string                 // as written, in file order
	digests map[digest.Digest]string // any repository
	repos   map[string]string        // registry/repo
	refs    map[string]string        // registry/repo@digest
}

// maxFileSize bounds a deny file: a Kubernetes ConfigMap holds at most 1 MiB.
const maxFileSize = 1 << 20

// Parse reads a deny list from r; name (the file's) is only for errors.
// Each line is one entry, '#' starts a comment, blank lines are ignored:
//
//	sha256:<hex>                   that digest, in any repository
//	REGISTRY/REPO                  every digest of the repository
//	REGISTRY/REPO@sha256:<hex>     that digest in that repository
//
// A tag is refused: it names no content, and regmend never serves tags.
// So is what would never match, names being compared as containerd writes
// them: an upper-case registry host, docker.io/NAME (containerd's name is
// docker.io/library/NAME) and a digest other than sha256. Any bad line refuses the whole list with an error wrapping
// errdefs.ErrInvalidArgument that names the file, the line and what is
// wrong: a list is applied whole or not at all.
func Parse(name string, r io.Reader) (*List, error) {
	l := &List{digests: map[digest.Digest]string{}, repos: map[string]string{}, refs: map[string]string{}}
	b, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("deny file %s: %w", name, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("deny file %s is larger than %d bytes: %w", name, maxFileSize, errdefs.ErrInvalidArgument)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxFileSize)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if err := l.add(line); err != nil {
			return nil, fmt.Errorf("deny file %s line %d: %q: %w", name, n, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("deny file %s: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return l, nil
}

// add parses one entry.
func (l *List) add(e string) error {
	if !strings.Contains(e, "/") {
		d, err := digest.Parse(e)
		if err != nil {
			return fmt.Errorf("not a digest (%v) nor REGISTRY/REPO[@DIGEST]: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := sha256Only(d); err != nil {
			return err
		}
		l.keep(e)
		if _, ok := l.digests[d]; !ok {
			l.digests[d] = e
		}
		return nil
	}
	ref, err := imageref.Parse(e)
	if err != nil {
		return err
	}
	if ref.Tag != "" {
		return fmt.Errorf("a tag names no content: deny a digest (REGISTRY/REPO@sha256:...) or the whole repository: %w", errdefs.ErrInvalidArgument)
	}
	// Names are compared as containerd writes them, never normalised: an
	// entry spelt otherwise would be accepted and never match.
	if ref.Registry != strings.ToLower(ref.Registry) {
		return fmt.Errorf("registry host %s has upper case: containerd names hosts in lower case (write %s): %w", ref.Registry, strings.ToLower(ref.Registry), errdefs.ErrInvalidArgument)
	}
	if ref.Registry == "docker.io" && !strings.Contains(ref.Repository, "/") {
		return fmt.Errorf("containerd names this repository docker.io/library/%s: %w", ref.Repository, errdefs.ErrInvalidArgument)
	}
	if ref.Digest != "" {
		if err := sha256Only(ref.Digest); err != nil {
			return err
		}
	}
	l.keep(e)
	if ref.Digest == "" {
		if _, ok := l.repos[ref.Name()]; !ok {
			l.repos[ref.Name()] = e
		}
		return nil
	}
	if k := ref.Name() + "@" + ref.Digest.String(); l.refs[k] == "" {
		l.refs[k] = e
	}
	return nil
}

// sha256Only refuses another algorithm: registries and containerd name
// content sha256:<hex>, so such an entry would never match.
func sha256Only(d digest.Digest) error {
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest algorithm %s: the format is sha256:<hex>: %w", d.Algorithm(), errdefs.ErrInvalidArgument)
	}
	return nil
}

func (l *List) keep(e string) { l.entries = append(l.entries, e) }

// Denied reports whether d in registry/repo is denied, and the entry that
// denies it: a digest entry first, then the repository@digest, then the
// repository. Names are compared as written (imageref never normalises).
func (l *List) Denied(registry, repo string, d digest.Digest) (string, bool) {
	if l == nil {
		return "", false
	}
	if e, ok := l.digests[d]; ok && d != "" {
		return e, true
	}
	name := registry + "/" + repo
	if e, ok := l.refs[name+"@"+d.String()]; ok {
		return e, true
	}
	if e, ok := l.repos[name]; ok {
		return e, true
	}
	return "", false
}

// Entries returns the entries as written, in file order.
func (l *List) Entries() []string {
	if l == nil {
		return nil
	}
	return append([]string(nil), l.entries...)
}

// Len returns how many entries the list holds.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.entries)
}

// ReadFile reads and parses the deny file at path, following symlinks (a
// ConfigMap volume's files are). A missing file is an error wrapping
// errdefs.ErrNotFound; anything but a regular file, one wrapping
// errdefs.ErrFailedPrecondition; bad content, Parse's.
func ReadFile(ctx context.Context, path string) (*List, error) {
	l, _, err := readFile(ctx, path)
	return l, err
}

// readFile is ReadFile that also returns the opened file's identity.
func readFile(ctx context.Context, path string) (*List, fs.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("deny file %s: %w: %w", path, errdefs.ErrNotFound, fs.ErrNotExist)
	} else if err != nil {
		return nil, nil, fmt.Errorf("deny file: %w", err)
	}
	defer f.Close()
	// Stat what was opened: a change after this is seen by the next look.
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("deny file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, st, fmt.Errorf("deny file %s is not a regular file (%s): %w", path, st.Mode().Type(), errdefs.ErrFailedPrecondition)
	}
	l, err := Parse(path, f)
	return l, st, err
}
