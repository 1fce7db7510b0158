package secret

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/containerd/log"
)

// Source gives the token in force now.
type Source interface {
	// Token returns the current token, or an error when there is none
	// usable; a guard then refuses every request.
	Token(ctx context.Context) (Token, error)
}

// Static is a Source whose token never changes.
type Static Token

// Token returns the token.
func (s Static) Token(context.Context) (Token, error) { return Token(s), nil }

var (
	_ Source = Static{}
	_ Source = (*FileSource)(nil)
)

// FileSource is a Source that follows a token file, so that rotating the
// token needs no restart. Each call stats the file (a few microseconds, and
// the mirror is asked only after the registry said 404) and re-reads it when
// it is another file or its size or modification time changed; a rename over
// it, an in-place rewrite and a Kubernetes Secret update all count.
//
// It fails closed: while the file is missing or unusable, Token returns the
// error, so a guard refuses every request, rather than keep a token the
// operator may have meant to revoke.
type FileSource struct {
	path string

	mu   sync.Mutex
	cur  File
	err  error
	seen os.FileInfo // the version cur or err came from
}

// NewFileSource follows the file f was read from, starting with f.
func NewFileSource(f File) *FileSource {
	return &FileSource{path: f.Path, cur: f, seen: f.info}
}

// Token returns the token the file holds now.
func (s *FileSource) Token(ctx context.Context) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.path)
	if err != nil {
		s.cur, s.err, s.seen = File{}, fmt.Errorf("token file: %w", err), nil
		return Token{}, s.err
	}
	if s.seen != nil && os.SameFile(s.seen, st) && s.seen.Size() == st.Size() && s.seen.ModTime().Equal(st.ModTime()) {
		return s.cur.Token, s.err
	}
	f, err := ReadFile(ctx, s.path)
	if err != nil {
		s.cur, s.err, s.seen = File{}, err, st
		return Token{}, err
	}
	s.cur, s.err, s.seen = f, nil, f.info
	log.G(ctx).WithField("file", s.path).Debug("token file re-read")
	return f.Token, nil
}
