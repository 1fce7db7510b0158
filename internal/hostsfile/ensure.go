package hostsfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// Action says what Ensure did (or, with WithDryRun, would do) to hosts.toml.
type Action string

const (
	// Created means there was no hosts.toml and Ensure wrote one.
	Created Action = "created"
	// Updated means Ensure changed an existing hosts.toml.
	Updated Action = "updated"
	// Unchanged means hosts.toml already had regmend in the right place and
	// was not written.
	Unchanged Action = "unchanged"
)

// Result reports what Ensure did.
type Result struct {
	// Path is the hosts.toml file, <hostsDir>/<dir>/hosts.toml.
	Path string
	// Action is what happened to it.
	Action Action
	// Backup is the copy of the previous file, when an existing file was
	// changed or removed (empty otherwise, and always with WithDryRun).
	Backup string
	// Content is the file's content after Ensure or Remove (what it would
	// be, with WithDryRun); nil when Remove deletes the file.
	Content []byte
	// Hosts lists the hosts containerd will try for the registry, in order,
	// as containerd's config package loaded Content: "scheme://host/path
	// [capabilities]". The last one is the server.
	Hosts []string
	// Notes are things the caller should tell the user.
	Notes []string
}

// Option changes how Ensure works.
type Option func(*options)

type options struct {
	scheme        string
	dryRun        bool
	header, token string // WithMirrorToken
}

// WithServerScheme sets the scheme ("http" or "https") of the registry's
// endpoint when the file does not name a server: use "http" for a plain-HTTP
// registry. Without it Ensure uses containerd's default (https; for
// localhost, http with https tried first). A server already in the file wins.
func WithServerScheme(scheme string) Option {
	return func(o *options) { o.scheme = scheme }
}

// WithDryRun makes Ensure compute and verify the new content without
// writing anything.
func WithDryRun() Option {
	return func(o *options) { o.dryRun = true }
}

// Ensure makes <hostsDir>/<registry>/hosts.toml list mirrorURL as a fallback
// mirror for registry: the mirror is the last [host] entry, with capabilities
// pull and resolve, and the registry's own endpoint is an explicit [host]
// entry before it, so containerd asks the mirror only after the registry said
// 404. registry is host[:port] as in image names ("docker.io" for Docker
// Hub); mirrorURL is http(s)://host[:port].
//
// A missing file is created. An existing file keeps everything else it says
// (server, TLS settings, headers, other mirrors and their order, comments);
// if it is already right it is not written at all. Before entries are added
// to or moved in an existing file, it is kept as hosts.toml.bak.<UTC time>
// next to it, without the mirror token (see backups.go), and the new content
// replaces it atomically with the same permissions.
//
// Ensure refuses, with an error wrapping errdefs.ErrFailedPrecondition and
// naming the file, to touch a file containerd cannot load, and it never
// writes content that containerd's own config package does not load with the
// mirror placed as described. Bad arguments give errors wrapping
// errdefs.ErrInvalidArgument.
func Ensure(ctx context.Context, hostsDir, registry, mirrorURL string, opts ...Option) (Result, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := ValidateRegistry(registry); err != nil {
		return Result{}, err
	}
	mirror, mirrorKey, err := parseMirror(mirrorURL)
	if err != nil {
		return Result{}, err
	}
	if o.scheme != "" && o.scheme != "http" && o.scheme != "https" {
		return Result{}, fmt.Errorf("server scheme %q: want http or https: %w", o.scheme, errdefs.ErrInvalidArgument)
	}
	if hostsDir == "" {
		return Result{}, fmt.Errorf("hosts directory not set: %w", errdefs.ErrInvalidArgument)
	}
	if (o.header == "") != (o.token == "") || strings.ContainsAny(o.header+o.token, "\r\n\x00") {
		return Result{}, fmt.Errorf("mirror token header: want a header name and a value, on one line: %w", errdefs.ErrInvalidArgument)
	}
	t := target{registry: registry, mirror: mirror, mirrorKey: mirrorKey, header: o.header, token: o.token}
	t.defaultKey, t.defaultNoTLSV = defaultServer(registry, o.scheme)

	regDir, notes, err := registryDir(hostsDir, registry)
	if err != nil {
		return Result{}, err
	}
	res := Result{Path: filepath.Join(regDir, "hosts.toml"), Notes: notes}
	refuse := func(format string, args ...any) (Result, error) {
		return Result{}, fmt.Errorf("%s: "+format+": %w", append(append([]any{res.Path}, args...), errdefs.ErrFailedPrecondition)...)
	}

	src, mode, err := readHostsFile(res.Path)
	exists, orderOK := err == nil, false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if src, err = newFile(regDir, t); err != nil {
			return Result{}, err
		}
		mode = 0o644
		if t.token != "" {
			mode = 0o600
		}
	case err != nil:
		return Result{}, err
	default:
		hosts, err := loadHosts(ctx, hostsDir, regDir, registry, src)
		if err != nil {
			return refuse("refusing to modify: %v", err)
		}
		if _, err := scan(src); err != nil {
			return refuse("refusing to modify: %v", err)
		}
		regEP, err := registryEndpoint(src, t)
		orderOK = err == nil && checkOrder(hosts, regEP, mirror) == nil
		if orderOK && checkToken(hosts, t) == nil {
			return unchanged(res, src, mode, hosts, t, o.dryRun)
		}
		if !orderOK && o.scheme != "" {
			res.Notes = append(res.Notes, "the server scheme option applies only when the file sets no server")
		}
	}

	verb := "create"
	if exists {
		verb = "modify"
		if _, ok := recordedMode(src); t.token != "" && mode&0o077 != 0 && !ok {
			t.record = modeRecord(mode)
		}
	}
	var out []byte
	if orderOK { // only the token changes: in place, nothing moves
		out, err = setHeader(src, t, eolOf(src))
	} else if out, err = edit(src, t); err == nil && t.token != "" {
		out, err = setHeader(out, t, eolOf(src))
	}
	if errdefs.IsInvalidArgument(err) || errdefs.IsFailedPrecondition(err) {
		return Result{}, fmt.Errorf("%s: refusing to %s: %w", res.Path, verb, err)
	} else if err != nil {
		return refuse("refusing to %s: %v", verb, err)
	}
	hosts, err := loadHosts(ctx, hostsDir, regDir, registry, out)
	if err == nil {
		var regEP endpoint
		if regEP, err = registryEndpoint(out, t); err == nil {
			err = checkOrder(hosts, regEP, mirror)
		}
		if err == nil {
			err = checkToken(hosts, t)
		}
	}
	if err != nil {
		return refuse("refusing to write: the new content fails containerd's check: %v", err)
	}
	res.Content, res.Hosts, res.Action = out, describe(hosts), Created
	if exists {
		res.Action = Updated
	}
	if o.dryRun {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	newMode := mode
	if t.token != "" {
		newMode &^= 0o077 // the file holds a secret
	}
	switch {
	case !exists:
		if err := os.MkdirAll(regDir, 0o755); err != nil {
			return Result{}, err
		}
	case !orderOK: // entries are added or moved: keep the user's file
		if res.Backup, err = backup(res.Path, backupText(src, &t.mirror, t.header, t.token), mode); err != nil {
			return Result{}, err
		}
	}
	if err := writeAtomic(res.Path, out, newMode); err != nil {
		return Result{}, err
	}
	return res, nil
}

// registryEndpoint returns the registry's own endpoint in hosts.toml content:
// its server, or containerd's default when it sets none.
func registryEndpoint(src []byte, t target) (endpoint, error) {
	var cfg fileFields
	if err := toml.Unmarshal(src, &cfg); err != nil {
		return endpoint{}, err
	}
	key, _, err := serverKey(cfg.Server, t)
	if err != nil {
		return endpoint{}, err
	}
	return parseEndpoint(key)
}

// registryDir returns the directory containerd reads for registry under
// hostsDir: as containerd's HostDirFromRoot looks, "host_port_" if it exists,
// else "host:port".
func registryDir(hostsDir, registry string) (string, []string, error) {
	var names []string
	if i := strings.LastIndex(registry, ":"); i > 0 {
		names = append(names, registry[:i]+"_"+registry[i+1:]+"_")
	}
	names = append(names, registry)
	for _, name := range names {
		dir := filepath.Join(hostsDir, name)
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return "", nil, fmt.Errorf("%s is not a directory: %w", dir, errdefs.ErrFailedPrecondition)
			}
			return dir, nil, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, err
		}
	}
	var notes []string
	if st, err := os.Stat(filepath.Join(hostsDir, "_default")); err == nil && st.IsDir() {
		notes = append(notes, fmt.Sprintf("containerd used %s for %s until now; the new directory %s takes its place for this registry",
			filepath.Join(hostsDir, "_default"), registry, filepath.Join(hostsDir, registry)))
	}
	if registry == "index.docker.io" || registry == "registry-1.docker.io" {
		notes = append(notes, "images named docker.io/... are configured under docker.io, not "+registry)
	}
	return filepath.Join(hostsDir, registry), notes, nil
}
