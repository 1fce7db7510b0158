package secret

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// File is a token file as read or created.
type File struct {
	// Path is the file's name.
	Path string
	// Token is what the file holds.
	Token Token
	// Mode is the file's permission bits.
	Mode fs.FileMode
	// Created is true when EnsureFile wrote the file.
	Created bool

	info fs.FileInfo // identifies this version of the file, for FileSource
}

// Exposed reports whether users other than the file's owner may read it.
// ReadFile accepts such a file (a Kubernetes Secret volume mounts files 0644
// by default, under a directory only root can enter) but callers should warn:
// whoever can read the token can read through the mirror.
func (f File) Exposed() bool { return f.Mode&0o044 != 0 }

// maxFileSize bounds what ReadFile reads: a token file holds one short line.
const maxFileSize = 4096

// ReadFile reads the token in path (see Parse). It follows symlinks, and
// refuses, wrapping errdefs.ErrFailedPrecondition, anything but a regular
// file, and a file that group or others may write: whoever can write it can
// choose the token. A missing file gives an error wrapping
// errdefs.ErrNotFound (and fs.ErrNotExist); bad content, one wrapping
// errdefs.ErrInvalidArgument. Errors name the file, never the token.
func ReadFile(ctx context.Context, path string) (File, error) {
	if err := ctx.Err(); err != nil {
		return File{}, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return File{}, fmt.Errorf("token file %s: %w: %w", path, errdefs.ErrNotFound, fs.ErrNotExist)
	} else if err != nil {
		return File{}, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	// Stat the opened file, not the name, so the checks apply to what is read.
	st, err := f.Stat()
	if err != nil {
		return File{}, fmt.Errorf("token file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("token file %s is not a regular file (%s): %w", path, st.Mode().Type(), errdefs.ErrFailedPrecondition)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return File{}, fmt.Errorf("token file %s is writable by group or others (mode %04o); chmod 600 it: %w",
			path, st.Mode().Perm(), errdefs.ErrFailedPrecondition)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return File{}, fmt.Errorf("token file: %w", err)
	}
	if len(b) > maxFileSize {
		return File{}, fmt.Errorf("token file %s is larger than %d bytes: %w", path, maxFileSize, errdefs.ErrInvalidArgument)
	}
	tok, err := Parse(b)
	if err != nil {
		return File{}, fmt.Errorf("token file %s: %w", path, err)
	}
	return File{Path: path, Token: tok, Mode: st.Mode().Perm(), info: st}, nil
}

// EnsureFile reads the token in path, or, if there is no such file, creates
// it with a new token (Generate) and mode 0600, creating missing parent
// directories with mode 0700. The new file appears whole or not at all: it is
// written under a temporary name and linked into place, which fails rather
// than replace a file that appeared meanwhile (that file is then read). An
// existing file is never overwritten. Errors are ReadFile's.
func EnsureFile(ctx context.Context, path string) (File, error) {
	f, err := ReadFile(ctx, path)
	if !errdefs.IsNotFound(err) {
		return f, err
	}
	tok, err := Generate()
	if err != nil {
		return File{}, err
	}
	switch err := create(path, tok); {
	case errors.Is(err, fs.ErrExist):
		return ReadFile(ctx, path) // created by someone else meanwhile
	case err != nil:
		return File{}, fmt.Errorf("create token file %s: %w", path, err)
	}
	f, err = ReadFile(ctx, path)
	f.Created = err == nil
	return f, err
}

// create writes tok to a temporary file next to path and hard-links it to
// path, which fails with fs.ErrExist if path exists.
func create(path string, tok Token) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".regmend-token-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer func() {
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.WriteString(tok.Reveal() + "\n"); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
