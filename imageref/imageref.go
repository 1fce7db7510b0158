// Package imageref is regmend's one parser of image references and of the
// registry and repository names inside them, on distribution's reference
// grammar. The CLI, the Go resolver, the mirror, the configuration and the
// hosts.toml editor all check names here, so a name one of them accepts is
// never refused (or, worse, read differently) by another.
//
// It only parses: it never normalises a name (no docker.io, no "library/"),
// never cleans a path, and never contacts anything. Every error it returns is
// classified errdefs.ErrInvalidArgument and names what was wrong.
package imageref

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Ref is an image reference that names its registry:
// registry/repository[:tag][@digest].
type Ref struct {
	Registry   string        // host[:port], as containerd's hosts.toml directory names it
	Repository string        // path within the registry
	Tag        string        // empty when absent
	Digest     digest.Digest // empty when absent
}

// Name returns registry/repository.
func (r Ref) Name() string { return r.Registry + "/" + r.Repository }

// String returns the reference as parsed.
func (r Ref) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// Parse parses s as registry/repository[:tag][@digest]. The registry must be
// named: its first component must hold a '.' or a ':', or be localhost, as in
// distribution's grammar; "app:v1" is refused rather than read as Docker Hub.
func Parse(s string) (Ref, error) {
	bad := func(why string) error {
		return fmt.Errorf("image reference %q: %s: %w", s, why, errdefs.ErrInvalidArgument)
	}
	parsed, err := reference.Parse(s)
	if err != nil {
		return Ref{}, bad(err.Error() + " (want registry/repo@digest or registry/repo:tag)")
	}
	named, ok := parsed.(reference.Named)
	if !ok {
		return Ref{}, bad("no repository name")
	}
	r := Ref{Registry: reference.Domain(named), Repository: reference.Path(named)}
	if !strings.ContainsAny(r.Registry, ".:") && r.Registry != "localhost" {
		// "docker/app" names Docker Hub's docker/app, not a registry
		// "docker": as containerd and docker read it.
		return Ref{}, bad("name the registry host (e.g. edge:5000/app@sha256:...)")
	}
	if err := ValidateRegistry(r.Registry); err != nil {
		return Ref{}, bad(err.Error())
	}
	if t, ok := parsed.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := parsed.(reference.Digested); ok {
		r.Digest = d.Digest()
		if err := r.Digest.Validate(); err != nil {
			return Ref{}, bad("digest: " + err.Error())
		}
	}
	return r, nil
}

// anchoredDomain is distribution's registry (domain) grammar, whole.
var anchoredDomain = regexp.MustCompile(`^` + reference.DomainRegexp.String() + `$`)

// ValidateRegistry checks that name is a registry host[:port] as it appears
// in image names (a DNS name, an IPv4 address or a bracketed IPv6 address,
// and a port 1-65535), without scheme or path.
func ValidateRegistry(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("registry %q: %s; want host[:port], e.g. edge:5000: %w", name, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case name == "":
		return bad("empty")
	case strings.Contains(name, "://"):
		return bad("has a scheme")
	case strings.ContainsAny(name, "/\\"):
		return bad("has a path")
	case !anchoredDomain.MatchString(name):
		return bad("not a valid host name")
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, ']') {
		port := name[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return bad(fmt.Sprintf("invalid port %q", port))
		}
	}
	return nil
}

// registryForPaths is a registry name that only serves to parse a bare
// repository path with the reference grammar.
const registryForPaths = "registry.invalid"

// ValidateRepository checks a repository name against distribution's
// grammar: lowercase components separated by '/', at most 255 characters.
func ValidateRepository(repo string) error {
	parsed, err := reference.Parse(registryForPaths + "/" + repo)
	named, ok := parsed.(reference.Named)
	if err != nil || !ok || reference.Domain(named) != registryForPaths || reference.Path(named) != repo || parsed.String() != named.Name() {
		return fmt.Errorf("repository %q is not a valid name: %w", repo, errdefs.ErrInvalidArgument)
	}
	return nil
}

// anchoredTag is distribution's tag grammar, whole: [\w][\w.-]{0,127}.
var anchoredTag = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)

// ValidateTag checks that tag is a tag as it appears in image names.
func ValidateTag(tag string) error {
	if !anchoredTag.MatchString(tag) {
		return fmt.Errorf("tag %q is not a valid tag (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-'): %w", tag, errdefs.ErrInvalidArgument)
	}
	return nil
}
