package secret

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/regmend/regmend/internal/filever"
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

// Refresher is a Source that answers Token from what it last read, and
// looks again on Refresh. Require refreshes when a well-formed token does
// not match, so a rotation takes effect at the new token's first use.
type Refresher interface {
	Source
	// Refresh looks at the token's origin now and returns what it holds.
	Refresh(ctx context.Context) (Token, error)
}

var (
	_ Source    = Static{}
	_ Refresher = (*FileSource)(nil)
)

// recheck is how long FileSource.Token trusts its last look at the file.
const recheck = time.Second

// FileSource is a Source that follows a token file, so that rotating the
// token needs no restart. Token answers from the last look at the file
// while that is under a second old, with no lock and no system call, so a
// matching request costs nothing more; otherwise, and on Refresh, it stats
// the file and re-reads it when it is another file or its size or
// modification time changed: a rename over it, an in-place rewrite and a
// Kubernetes Secret update all count.
//
// It fails closed: while the file is missing or unusable, Token returns the
// error, so a guard refuses every request, rather than keep a token the
// operator may have meant to revoke. A removed file is noticed within a
// second, or at once by Refresh.
type FileSource struct {
	path    string
	recheck time.Duration
	stat    func(string) (os.FileInfo, error) // os.Stat; tests count calls

	mu  sync.Mutex // one look at the file at a time
	cur atomic.Pointer[fileState]
}

// fileState is one look at the token file.
type fileState struct {
	tok  Token
	err  error
	seen os.FileInfo // the version tok or err came from
	at   time.Time   // when the file was looked at
}

// NewFileSource follows the file f was read from, starting with f.
func NewFileSource(f File) *FileSource {
	s := &FileSource{path: f.Path, recheck: recheck, stat: os.Stat}
	s.cur.Store(&fileState{tok: f.Token, seen: f.info, at: time.Now()})
	return s
}

// Token returns the token the file holds, as last seen if that was under a
// second ago.
func (s *FileSource) Token(ctx context.Context) (Token, error) {
	if st := s.cur.Load(); time.Since(st.at) < s.recheck {
		return st.tok, st.err
	}
	return s.Refresh(ctx)
}

// Refresh looks at the file now and returns the token it holds. Callers
// that queue behind a look that began after they called share its answer,
// so a burst of refreshes costs one stat.
func (s *FileSource) Refresh(ctx context.Context) (Token, error) {
	called := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur.Load()
	if prev.at.After(called) {
		return prev.tok, prev.err
	}
	now := time.Now()
	st, err := s.stat(s.path)
	if err != nil {
		next := &fileState{err: fmt.Errorf("token file: %w", err), at: now}
		s.cur.Store(next)
		return Token{}, next.err
	}
	if filever.Same(prev.seen, st) { // internal/filever
		s.cur.Store(&fileState{tok: prev.tok, err: prev.err, seen: prev.seen, at: now})
		return prev.tok, prev.err
	}
	f, err := ReadFile(ctx, s.path)
	if err != nil {
		s.cur.Store(&fileState{err: err, seen: st, at: now})
		return Token{}, err
	}
	s.cur.Store(&fileState{tok: f.Token, seen: f.info, at: now})
	log.G(ctx).WithField("file", s.path).Debug("token file re-read")
	return f.Token, nil
}
