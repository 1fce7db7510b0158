package imagebuild

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// file is one regular file of the root filesystem.
type file struct {
	src  string // on disk
	dst  string // in the image, absolute
	mode int64
}

// rootLayer is the image's only layer: the binary, the CA bundle and their
// parent directories, owned by root, every time set to created. The tar is
// produced again each time the layer is opened (to digest it, compress it,
// write it), streaming from the files rather than holding the binary in
// memory.
func rootLayer(binary, caBundle string, created time.Time) (v1.Layer, error) {
	files := []file{
		{src: caBundle, dst: CABundlePath, mode: 0o644},
		{src: binary, dst: BinaryPath, mode: 0o755},
	}
	for _, f := range files {
		st, err := os.Stat(f.src)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", f.src)
		}
	}
	opener := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTar(pw, files, created)) }()
		return pr, nil
	}
	return tarball.LayerFromOpener(opener,
		tarball.WithMediaType(types.OCILayer),
		// Fixed, so the compressed digest depends only on the content.
		tarball.WithCompressionLevel(gzip.BestCompression))
}

// writeTar writes the directories leading to each file (once, parents
// first), then the file.
func writeTar(w io.Writer, files []file, created time.Time) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range files {
		for _, d := range parents(f.dst) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(header(tar.TypeDir, d+"/", 0o755, 0, created)); err != nil {
				return err
			}
		}
		if err := copyFile(tw, f, created); err != nil {
			return err
		}
	}
	return tw.Close()
}

func copyFile(tw *tar.Writer, f file, created time.Time) error {
	in, err := os.Open(f.src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(header(tar.TypeReg, f.dst, f.mode, st.Size(), created)); err != nil {
		return err
	}
	n, err := io.Copy(tw, in)
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s changed size while being read", f.src)
	}
	return err
}

// header is a tar header with nothing from the build machine in it: no user
// or group names, no access or change times.
func header(typ byte, name string, mode, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     strings.TrimPrefix(name, "/"),
		Mode:     mode,
		Size:     size,
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}
}

// parents returns the directories above an absolute path, outermost first:
// "/usr/bin/regmend" gives "/usr", "/usr/bin".
func parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}
