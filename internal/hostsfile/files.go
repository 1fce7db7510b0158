package hostsfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

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

// backup copies the previous content of path to path.bak.<UTC time>, with a
// numeric suffix if that name is taken, and returns the backup's name.
func backup(path string, content []byte, mode fs.FileMode) (string, error) {
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
