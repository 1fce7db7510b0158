package hostsfile

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/imageref"
)

// endpoint is a registry API endpoint the way containerd resolves a hosts.toml
// host key or server value: scheme, host[:port] and the API root path without
// its trailing "/v2" ("" for the usual root).
type endpoint struct {
	scheme, host, path string
}

func (e endpoint) String() string { return e.scheme + "://" + e.host + e.path }

// sameHost reports whether e and o name the same host and API root. The
// scheme is left out on purpose: containerd switches an http host that has a
// TLS setting to https with an http fallback.
func (e endpoint) sameHost(o endpoint) bool {
	return strings.EqualFold(e.host, o.host) && e.path == o.path
}

// same reports whether e and o are the same endpoint, scheme included.
func (e endpoint) same(o endpoint) bool { return e.scheme == o.scheme && e.sameHost(o) }

// parseEndpoint parses a host key or server value as containerd's
// parseHostConfig does: a value not starting with "http" gets "https://".
func parseEndpoint(s string) (endpoint, error) {
	if !strings.HasPrefix(s, "http") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, err
	}
	return endpoint{scheme: u.Scheme, host: u.Host, path: apiRoot(u.Path)}, nil
}

// apiRoot cleans an endpoint path and drops a trailing "/v2".
func apiRoot(p string) string {
	if p == "" {
		return ""
	}
	p = strings.TrimSuffix(path.Clean(p), "/v2")
	if p == "/" || p == "." {
		return ""
	}
	return p
}

// ValidateRegistry checks that registry can have a hosts.toml regmend
// edits: a bare host[:port], as containerd passes it to the host directory
// lookup, and not _default.
func ValidateRegistry(registry string) error {
	bad := func(why string) error {
		return fmt.Errorf("registry %q: %s; want host[:port] as it appears in image names, e.g. edge:5000: %w",
			registry, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case registry == "":
		return bad("empty")
	case registry == "_default":
		return bad("_default applies to every registry and has no server of its own, so regmend cannot be put after it")
	}
	return imageref.ValidateRegistry(registry)
}

// parseMirror validates mirrorURL and returns its endpoint and the host key
// regmend writes for it ("scheme://host[:port]").
func parseMirror(mirrorURL string) (endpoint, string, error) {
	bad := func(why string) error {
		return fmt.Errorf("mirror %q: %s; want http(s)://host[:port], e.g. http://127.0.0.1:5050: %w",
			mirrorURL, why, errdefs.ErrInvalidArgument)
	}
	u, err := url.Parse(mirrorURL)
	switch {
	case err != nil:
		return endpoint{}, "", bad(err.Error())
	case u.Scheme != "http" && u.Scheme != "https":
		return endpoint{}, "", bad("scheme must be http or https")
	case u.Opaque != "" || u.Host == "":
		return endpoint{}, "", bad("no host")
	case u.User != nil:
		return endpoint{}, "", bad("user info is not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return endpoint{}, "", bad("query or fragment is not allowed")
	case u.Path != "" && u.Path != "/":
		return endpoint{}, "", bad("a path is not allowed")
	}
	if err := imageref.ValidateRegistry(u.Host); err != nil {
		return endpoint{}, "", bad("host: " + err.Error())
	}
	key := u.Scheme + "://" + u.Host
	return endpoint{scheme: u.Scheme, host: u.Host}, key, nil
}

// defaultServer returns the endpoint containerd uses for registry when
// hosts.toml sets no server, as a host key, and whether containerd turns TLS
// verification off for it (it does so for localhost on ports other than 80).
// scheme, when not empty, is the scheme the caller asked for.
func defaultServer(registry, scheme string) (key string, skipVerify bool) {
	if registry == "docker.io" {
		if scheme == "" {
			scheme = "https"
		}
		return scheme + "://registry-1.docker.io", false
	}
	if scheme == "" && docker.IsLocalhost(registry) {
		_, port, _ := net.SplitHostPort(registry)
		switch port {
		case "", "443":
			return "https://" + registry, true
		case "80":
			return "http://" + registry, false
		default:
			return "http://" + registry, true
		}
	}
	if scheme == "" {
		scheme = "https"
	}
	return scheme + "://" + registry, false
}
