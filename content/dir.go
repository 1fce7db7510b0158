package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// contentPlugin names containerd's content store plugin, which exports the
// directory it keeps blobs in as "root".
const (
	contentPluginType = "io.containerd.content.v1"
	contentPluginID   = "content"
)

// PluginLister is the part of containerd's introspection service that
// lists plugins with their exports (the gRPC client's
// IntrospectionService()).
type PluginLister interface {
	Plugins(ctx context.Context, filters ...string) (*introspectionapi.PluginsResponse, error)
}

// ContentDir asks containerd where its content store keeps blobs: the
// "root" export of plugin io.containerd.content.v1.content, as
// `ctr plugins ls -d` shows it. The directory is on containerd's machine;
// whether this process can read it is for OpenDir to find out.
func ContentDir(ctx context.Context, pl PluginLister) (string, error) {
	resp, err := pl.Plugins(ctx, "type=="+contentPluginType+",id=="+contentPluginID)
	if err != nil {
		return "", fmt.Errorf("ask containerd for its content plugin: %w", err)
	}
	for _, p := range resp.GetPlugins() {
		if p.GetType() == contentPluginType && p.GetID() == contentPluginID {
			if root := p.GetExports()["root"]; root != "" {
				return root, nil
			}
		}
	}
	return "", fmt.Errorf("containerd's %s.%s plugin exports no root: %w", contentPluginType, contentPluginID, errdefs.ErrNotFound)
}

// Dir reads committed blobs straight from containerd's content directory
// (<root>/blobs/<algorithm>/<hex>, the layout of containerd's local store)
// instead of over containerd's API, which moves every byte through a gRPC
// stream. Everything else (Info, labels, listing, and any blob the
// directory does not give) goes to the wrapped store. Whether a blob is
// visible at all is still containerd's answer: ReaderAt asks Info of the
// wrapped store (containerd's metadata, per namespace) before opening the
// file, since the directory holds the blobs of every namespace.
//
// Dir only opens files for reading; it never writes, creates or removes
// anything under root. Bytes read are not trusted: heals verify them
// against their digest as they stream (package resolver/registry).
type Dir struct {
	ctrcontent.Store
	root      string
	fallbacks atomic.Int64
}

// OpenDir returns store reading blobs from root where it can. It fails,
// and the caller should read through store alone, when this process cannot
// list root, or root/blobs once it exists (absent, not a directory,
// permission denied). A store that holds nothing yet has no root/blobs.
func OpenDir(store ctrcontent.Store, root string) (*Dir, error) {
	if root == "" {
		return nil, fmt.Errorf("content directory not named: %w", errdefs.ErrInvalidArgument)
	}
	if err := listable(root); err != nil {
		return nil, fmt.Errorf("content directory %s: %w", root, err)
	}
	if err := listable(filepath.Join(root, "blobs")); err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("content directory %s: %w", root, err)
	}
	return &Dir{Store: store, root: root}, nil
}

// listable reports whether dir can be opened and listed.
func listable(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return classifyFSError(err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) { // EOF: empty, but readable
		return classifyFSError(err)
	}
	return nil
}

// Root returns the directory blobs are read from.
func (d *Dir) Root() string { return d.root }

// Fallbacks returns how many reads went to the wrapped store because the
// directory did not give the blob.
func (d *Dir) Fallbacks() int64 { return d.fallbacks.Load() }

// ReaderAt opens desc's file in the content directory once containerd
// confirms the blob in the context's namespace; when the file cannot be
// opened (removed, unreadable, a directory of another store) it reads
// through the wrapped store instead.
func (d *Dir) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("local content %q: %w", desc.Digest, errdefs.ErrInvalidArgument)
	}
	if _, err := d.Store.Info(ctx, desc.Digest); err != nil {
		return nil, err
	}
	p := filepath.Join(d.root, "blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded())
	ra, err := openFile(p)
	if err == nil {
		return ra, nil
	}
	d.fallbacks.Add(1)
	log.G(ctx).WithError(err).WithField("digest", desc.Digest).Debug("blob not readable in the content directory; reading through containerd's API")
	return d.Store.ReaderAt(ctx, desc)
}

// openFile opens a regular file for reading, as containerd's local store
// does (its ReaderAt has the same Reader method, which content.Open uses
// for plain sequential reads).
func openFile(p string) (*fileReaderAt, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", p)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileReaderAt{f: f, size: fi.Size()}, nil
}

// fileReaderAt is a blob file opened read-only.
type fileReaderAt struct {
	f    *os.File
	size int64
}

func (r *fileReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *fileReaderAt) Close() error                            { return r.f.Close() }
func (r *fileReaderAt) Size() int64                             { return r.size }
func (r *fileReaderAt) Reader() io.Reader                       { return io.NewSectionReader(r.f, 0, r.size) }

func classifyFSError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: %w", err, errdefs.ErrPermissionDenied)
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
}

// DirNone, as a content directory setting, reads every blob through
// containerd's API; "" (the default) asks containerd where its directory is.
const DirNone = "none"

// ReadDirectly returns store reading blobs from containerd's content
// directory as setting names it: "" asks containerd (pl) where it is, any
// other value is the directory. It returns nil and no error for DirNone,
// and nil with the reason when the directory cannot be read: the caller
// then reads through store, containerd's API, as before.
func ReadDirectly(ctx context.Context, store ctrcontent.Store, pl PluginLister, setting string) (*Dir, error) {
	if setting == DirNone {
		return nil, nil
	}
	root := setting
	if root == "" {
		var err error
		if root, err = ContentDir(ctx, pl); err != nil {
			return nil, err
		}
	}
	return OpenDir(store, root)
}
