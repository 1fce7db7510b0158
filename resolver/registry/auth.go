package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/config/configfile"
)

// loadAuthFile reads a docker-style config.json (auths, credential helpers)
// and returns containerd's credentials callback. Secrets stay in memory and
// are never formatted into errors or logs.
func loadAuthFile(path string) (func(host string) (string, string, error), error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	cf := configfile.New(path)
	if err := cf.LoadFromReader(f); err != nil {
		// The decoder's message may quote the file; say only where it is.
		return nil, fmt.Errorf("auth file %s is not a valid docker config.json: %w", path, errdefs.ErrInvalidArgument)
	}
	return func(host string) (string, string, error) {
		key := host
		if host == "registry-1.docker.io" {
			key = "https://index.docker.io/v1/"
		}
		ac, err := cf.GetAuthConfig(key)
		if err != nil {
			return "", "", fmt.Errorf("credentials for %s from %s: %w", host, path, errdefs.ErrUnauthenticated)
		}
		if ac.IdentityToken != "" {
			return "", ac.IdentityToken, nil
		}
		return ac.Username, ac.Password, nil
	}, nil
}
