package ctrconf

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/internal/hostsfile"
)

// Finding is one containerd setting that defeats regmend.
type Finding struct {
	// Setting names the setting as it is written, e.g.
	// "discard_unpacked_layers = true".
	Setting string `json:"setting"`
	// File is the file that sets it (the one to change), Line its line (0
	// when the setting is a default or a whole file's layout).
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
	// Why says what the setting does to regmend.
	Why string `json:"why"`
	// Fix is what to write in File instead (TOML or YAML), followed by
	// what to restart.
	Fix string `json:"fix"`
}

// Where is File:Line, or File when the line is not known.
func (f Finding) Where() string {
	if f.Line > 0 {
		return fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return f.File
}

// String is the finding on one paragraph: where, setting, why, then the
// fix indented below.
func (f Finding) String() string {
	return fmt.Sprintf("%s: %s: %s\n  fix:\n%s", f.Where(), f.Setting, f.Why, indent(f.Fix, "    "))
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// DefaultConfigFile is containerd's config file when none is given.
const DefaultConfigFile = "/etc/containerd/config.toml"

// DefaultMirror is regmend's mirror URL when none is given (serve's
// default listen address).
const DefaultMirror = "http://127.0.0.1:5050"

// Option configures Check.
type Option func(*options) error

type options struct {
	root, configFile, hostsDir, mirror string
	registries                         []string
}

// WithRoot reads every file below dir instead of /, as a node's file system
// mounted there (tests use a temporary directory). Findings name the
// files by their paths on the node. The default is "/".
func WithRoot(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return fmt.Errorf("root directory is empty: %w", errdefs.ErrInvalidArgument)
		}
		o.root = dir
		return nil
	}
}

// WithConfigFile names containerd's config file. The default is
// DefaultConfigFile.
func WithConfigFile(path string) Option {
	return func(o *options) error {
		if path == "" {
			return fmt.Errorf("containerd config file is empty: %w", errdefs.ErrInvalidArgument)
		}
		o.configFile = path
		return nil
	}
}

// WithHostsDir names the directory regmend writes hosts.toml files under;
// CRI's config_path must be that directory. The default is
// hostsfile.DefaultHostsDir.
func WithHostsDir(dir string) Option {
	return func(o *options) error { o.hostsDir = dir; return nil }
}

// WithMirror is regmend's mirror URL, for the registries.yaml fix. The
// default is DefaultMirror.
func WithMirror(url string) Option {
	return func(o *options) error { o.mirror = url; return nil }
}

// WithRegistries names the registries regmend serves, for the
// registries.yaml check and fix. The default names none (the fix then
// shows a placeholder).
func WithRegistries(registries ...string) Option {
	return func(o *options) error { o.registries = append(o.registries, registries...); return nil }
}

// path is p (a path on the node) below the root.
func (o *options) path(p string) string { return filepath.Join(o.root, p) }

// node turns a path below the root back into the node's path.
func (o *options) node(p string) string {
	if o.root == "/" {
		return p
	}
	if rel, err := filepath.Rel(o.root, p); err == nil && !strings.HasPrefix(rel, "..") {
		return "/" + filepath.ToSlash(rel)
	}
	return p
}

// Check reads containerd's config file (and its imports) and the k3s and
// rke2 files, and returns every setting that defeats regmend, in a fixed
// order: the config_path check, discard_unpacked_layers, then the k3s or
// rke2 layout. A missing config file is a finding, not an error; a file that
// exists but cannot be read or parsed is an error (errdefs
// FailedPrecondition for a parse error), returned with the findings that
// did not need it.
func Check(ctx context.Context, opts ...Option) ([]Finding, error) {
	o := options{root: "/", configFile: DefaultConfigFile, hostsDir: hostsfile.DefaultHostsDir, mirror: DefaultMirror}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Finding
	configErr := o.checkConfig(&out)
	out = append(out, o.checkRancher()...)
	return out, configErr
}

// checkConfig adds the findings of containerd's config file.
func (o *options) checkConfig(out *[]Finding) error {
	// hostsDir is compared with config_path, a path on the node: not
	// below the root.
	path := o.path(o.configFile)
	if _, err := os.Stat(path); err == nil {
		// Read once: config_path and the other traps are judged on the
		// same files.
		loaded, err := hostsfile.LoadContainerdConfig(path)
		if err != nil {
			return fmt.Errorf("containerd config %s: %w", o.configFile, err)
		}
		files := wrap(loaded)
		if cp := hostsfile.CheckCRIConfigPathOf(path, loaded, o.hostsDir); !cp.OK() {
			*out = append(*out, o.configPathFinding(cp, files))
		}
		if f, ok := o.discard(files); ok {
			*out = append(*out, f)
		}
		return nil
	}
	cp, err := hostsfile.CheckCRIConfigPath(path, o.hostsDir)
	if err != nil {
		return fmt.Errorf("containerd config %s: %w", o.configFile, err)
	}
	if cp.Kind == hostsfile.ConfigFileMissing {
		// On k3s and rke2 the config named may be the wrong one: judge
		// theirs instead (once).
		if d := o.rancher(); d != nil && o.configFile != d.config() {
			o.configFile = d.config()
			return o.checkConfig(out)
		}
	}
	*out = append(*out, o.configPathFinding(cp, nil))
	return nil
}

// configPathFinding turns hostsfile's config_path finding into a Finding,
// with the line of config_path where it is set.
func (o *options) configPathFinding(cp hostsfile.Finding, files []file) Finding {
	f := Finding{File: o.node(cp.FixIn), Fix: cp.Fix + "then restart containerd\n"}
	switch cp.Kind {
	case hostsfile.ConfigFileMissing:
		f.Setting = "no config file"
	case hostsfile.ConfigPathUnset:
		f.Setting = "config_path unset"
	default:
		f.Setting = fmt.Sprintf("config_path = %q", cp.ConfigPath)
	}
	// hostsfile's message names the fix too; Why keeps the first part.
	why, _, _ := strings.Cut(cp.Message, " In "+cp.FixIn)
	why, _, _ = strings.Cut(why, "\n")
	f.Why = o.unroot(why)
	for _, c := range files {
		if c.Path == cp.SetIn {
			for _, t := range hostsfile.CRIRegistryTables(c.Version) {
				if line := c.line(append(t, "config_path")...); line > 0 {
					f.Line = line
				}
			}
		}
	}
	return f
}

// unroot replaces the root in a message from hostsfile with "/".
func (o *options) unroot(s string) string {
	if o.root == "/" {
		return s
	}
	return strings.ReplaceAll(s, strings.TrimSuffix(o.root, "/")+"/", "/")
}
