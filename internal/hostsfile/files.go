package hostsfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// readHostsFile reads an existing hosts.toml and its permissions. It refuses
// anything but a regular file: a symlink is managed elsewhere.
func readHostsFile(path string) ([]byte, fs.FileMode, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: refusing to modify: not a regular file (%s): %w", path, st.Mode().Type(), errdefs.ErrFailedPrecondition)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	return b, st.Mode().Perm(), nil
}

// newFile returns the top of a new hosts.toml: the server, with the TLS
// settings containerd would have used without the file (skip_verify for
// localhost, Docker-style certificate files found in regDir). edit adds the
// host entries.
func newFile(regDir string, t target) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# containerd registry host configuration for " + t.registry + ", written by regmend.\n")
	b.WriteString("# containerd tries the [host] entries in file order, then server.\n")
	b.WriteString("server = " + quote(t.defaultKey) + "\n")
	if t.defaultNoTLSV {
		b.WriteString("skip_verify = true\n")
	}
	entries, err := os.ReadDir(regDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// Without hosts.toml containerd loads these files (loadCertFiles); with
	// one it does not, so name them.
	var ca, client []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		switch {
		case strings.HasSuffix(name, ".crt"):
			ca = append(ca, quote(name))
		case strings.HasSuffix(name, ".cert"):
			key := strings.TrimSuffix(name, ".cert") + ".key"
			if _, err := os.Stat(filepath.Join(regDir, key)); err == nil {
				client = append(client, "["+quote(name)+", "+quote(key)+"]")
			} else {
				client = append(client, quote(name))
			}
		}
	}
	if len(ca) > 0 {
		b.WriteString("ca = [" + strings.Join(ca, ", ") + "]\n")
	}
	if len(client) > 0 {
		b.WriteString("client = [" + strings.Join(client, ", ") + "]\n")
	}
	return []byte(b.String()), nil
}

// writeAtomic replaces path with content: it writes a temporary file in the
// same directory, with mode, and renames it over path.
func writeAtomic(path string, content []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".hosts.toml.tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(content); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
