package hostsfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/log"
	"github.com/pelletier/go-toml/v2"
	"github.com/sirupsen/logrus"
)

// loadHosts loads content as <regDir>/hosts.toml with containerd's own config
// package and returns the hosts containerd would try for registry, in order.
//
// The file is placed in a scratch directory next to regDir (inside base),
// holding links to everything else in regDir, so that relative ca and client
// paths resolve as they will for the real file. containerd does not fail on a
// hosts.toml it cannot decode: it logs the error and falls back to the
// directory's certificate files. That log entry is caught and returned as the
// error.
func loadHosts(ctx context.Context, base, regDir, registry string, content []byte) ([]docker.RegistryHost, error) {
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = os.TempDir()
	}
	tmp, err := os.MkdirTemp(base, ".regmend-verify-")
	if err != nil { // e.g. a read-only hosts directory with WithDryRun
		if tmp, err = os.MkdirTemp("", ".regmend-verify-"); err != nil {
			return nil, err
		}
	}
	defer os.RemoveAll(tmp)
	entries, err := os.ReadDir(regDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		if e.Name() == "hosts.toml" {
			continue
		}
		if err := os.Symlink(filepath.Join(regDir, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "hosts.toml"), content, 0o600); err != nil {
		return nil, err
	}

	catcher := &decodeErrors{}
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	logger.AddHook(catcher)
	ctx = log.WithLogger(ctx, logrus.NewEntry(logger))

	hosts, err := config.ConfigureHosts(ctx, config.HostOptions{
		HostDir: func(string) (string, error) { return tmp, nil },
	})(registry)
	if derr := catcher.get(); derr != nil {
		return nil, derr
	}
	if err != nil {
		return nil, fmt.Errorf("containerd cannot use it: %w", err)
	}
	return hosts, nil
}

// decodeErrors is a logrus hook that keeps the error containerd logs when it
// fails to decode hosts.toml.
type decodeErrors struct {
	mu  sync.Mutex
	err error
}

func (*decodeErrors) Levels() []logrus.Level { return []logrus.Level{logrus.ErrorLevel} }

func (c *decodeErrors) Fire(e *logrus.Entry) error {
	if !strings.HasPrefix(e.Message, "failed to decode") {
		return nil
	}
	err, _ := e.Data[logrus.ErrorKey].(error)
	if err == nil {
		err = errors.New(e.Message)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		err = fmt.Errorf("line %d column %d: %w", row, col, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = fmt.Errorf("containerd cannot parse it: %w", err)
	}
	return nil
}

func (c *decodeErrors) get() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// checkOrder checks hosts, as containerd loaded them, against what regmend
// needs: the mirror exactly once, as the last [host] entry (the very last
// host is always the server), with capabilities pull and resolve only; and,
// for pull and for resolve, an entry for the registry's own endpoint before
// it.
func checkOrder(hosts []docker.RegistryHost, registry, mirror endpoint) error {
	n := len(hosts)
	if n > 0 && hostEndpoint(hosts[n-1]).sameHost(mirror) {
		return fmt.Errorf("the mirror is the server; containerd would treat regmend as the registry")
	}
	at := -1
	for i := 0; i < n-1; i++ {
		if !hostEndpoint(hosts[i]).sameHost(mirror) {
			continue
		}
		if at >= 0 {
			return fmt.Errorf("the mirror's host %s is listed more than once", mirror.host)
		}
		at = i
	}
	switch {
	case at < 0:
		return fmt.Errorf("the mirror is not among the [host] entries")
	case at != n-2:
		return fmt.Errorf("the mirror is not the last [host] entry")
	case hosts[at].Capabilities != docker.HostCapabilityPull|docker.HostCapabilityResolve:
		return fmt.Errorf("the mirror's capabilities are not exactly pull and resolve")
	}
	for _, c := range []struct {
		name string
		cap  docker.HostCapabilities
	}{{"pull", docker.HostCapabilityPull}, {"resolve", docker.HostCapabilityResolve}} {
		found := false
		for _, h := range hosts[:at] {
			if h.Capabilities.Has(c.cap) && hostEndpoint(h).sameHost(registry) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("no [host] entry for the registry %s with capability %s comes before the mirror", registry, c.name)
		}
	}
	return nil
}

func hostEndpoint(h docker.RegistryHost) endpoint {
	return endpoint{scheme: h.Scheme, host: h.Host, path: apiRoot(h.Path)}
}

// describe lists hosts as containerd will try them.
func describe(hosts []docker.RegistryHost) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		var caps []string
		for _, c := range []struct {
			name string
			cap  docker.HostCapabilities
		}{{"pull", docker.HostCapabilityPull}, {"resolve", docker.HostCapabilityResolve},
			{"push", docker.HostCapabilityPush}, {"referrers", docker.HostCapabilityReferrers}} {
			if h.Capabilities.Has(c.cap) {
				caps = append(caps, c.name)
			}
		}
		out[i] = fmt.Sprintf("%s://%s%s [%s]", h.Scheme, h.Host, h.Path, strings.Join(caps, ","))
	}
	return out
}
