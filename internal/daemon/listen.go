package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// FDPrefix marks a listen setting naming an inherited socket: "fd://3" is
// the listening TCP socket at file descriptor 3, opened by whoever started
// regmend (a supervisor, or a test harness that must know the address
// before the process starts).
const FDPrefix = "fd://"

// Addrs are the addresses the daemon's listeners are bound to, as
// addr_file holds them (JSON). A setting with port 0 has the port the
// kernel chose; Metrics and Peer are empty when those listeners are off.
type Addrs struct {
	Mirror  string `json:"mirror"`
	Metrics string `json:"metrics,omitempty"`
	Peer    string `json:"peer,omitempty"`
}

// listeners are bound by New, before anything reads the daemon's own
// addresses: the registry exclusion and the peer identity then use the
// port actually bound, not a "0".
type listeners struct {
	mirror, metrics, peer net.Listener
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.mirror, l.metrics, l.peer} {
		if ln != nil {
			ln.Close()
		}
	}
}

// bind opens every listener cfg names and returns cfg with each address's
// port replaced by the bound one.
func bind(cfg Config) (*listeners, Config, error) {
	l := &listeners{}
	var err error
	if l.mirror, cfg.Listen, err = listen(cfg.Listen); err != nil {
		return nil, cfg, fmt.Errorf("mirror listen: %w", err)
	}
	if cfg.MetricsListen != "" {
		if l.metrics, cfg.MetricsListen, err = listen(cfg.MetricsListen); err != nil {
			l.close()
			return nil, cfg, fmt.Errorf("metrics listen: %w", err)
		}
	}
	if cfg.PeerListen != "" {
		if l.peer, cfg.PeerListen, err = listen(cfg.PeerListen); err != nil {
			l.close()
			return nil, cfg, fmt.Errorf("peer listen: %w", err)
		}
	}
	return l, cfg, nil
}

// listen binds setting (host:port or fd://N) and returns the listener and
// the address as the daemon names itself: the configured host (so ":5050"
// keeps meaning every interface) with the bound port.
func listen(setting string) (net.Listener, string, error) {
	if n, ok := strings.CutPrefix(setting, FDPrefix); ok {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 3 {
			return nil, "", fmt.Errorf("%q: want %sN with N at least 3: %w", setting, FDPrefix, errdefs.ErrInvalidArgument)
		}
		f := os.NewFile(uintptr(fd), setting)
		// FileListener holds a duplicate; the inherited descriptor is
		// closed so that processes this one starts do not hold the port.
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", setting, err)
		}
		if _, ok := ln.Addr().(*net.TCPAddr); !ok {
			ln.Close()
			return nil, "", fmt.Errorf("%s is a %s socket, want TCP: %w", setting, ln.Addr().Network(), errdefs.ErrInvalidArgument)
		}
		return ln, ln.Addr().String(), nil
	}
	ln, err := net.Listen("tcp", setting)
	if err != nil {
		return nil, "", err
	}
	host, _, _ := net.SplitHostPort(setting)
	return ln, net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)), nil
}

// validListen checks a listen setting: host:port or fd://N.
func validListen(s string) bool {
	if n, ok := strings.CutPrefix(s, FDPrefix); ok {
		fd, err := strconv.Atoi(n)
		return err == nil && fd >= 3
	}
	_, _, err := net.SplitHostPort(s)
	return err == nil
}

// Addrs returns the addresses the daemon listens on.
func (d *Daemon) Addrs() Addrs {
	a := Addrs{Mirror: d.cfg.Listen}
	if d.lns.metrics != nil {
		a.Metrics = d.cfg.MetricsListen
	}
	if d.lns.peer != nil {
		a.Peer = d.cfg.PeerListen
	}
	return a
}

// writeAddrFile writes a to path through a temporary file and a rename, so
// a reader polling for it never sees half of it.
func writeAddrFile(path string, a Addrs) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("addr_file: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	err = errors.Join(err, f.Chmod(0o644), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("addr_file %s: %w", path, err)
	}
	return nil
}
