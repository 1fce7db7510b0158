package hostsfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// FindingKind classifies the CRI registry config_path of a containerd config.
type FindingKind string

const (
	// ConfigPathOK means config_path names one directory (the hosts
	// directory regmend writes to, when that was given).
	ConfigPathOK FindingKind = "ok"
	// ConfigFileMissing means there is no containerd config file.
	// containerd 2.x then uses "/etc/containerd/certs.d:/etc/docker/certs.d"
	// (which its transfer-service pulls do not split), 1.6/1.7 no hosts.toml.
	ConfigFileMissing FindingKind = "config-missing"
	// ConfigPathUnset means config_path is not set: containerd 1.6/1.7 read
	// no hosts.toml for CRI pulls; 2.x falls back to the colon-separated
	// default, see ConfigPathList.
	ConfigPathUnset FindingKind = "unset"
	// ConfigPathList means config_path lists several directories separated
	// by colons. containerd 2.x pulls CRI images through the transfer
	// service, which takes the whole value as one directory name, so every
	// hosts.toml is silently ignored.
	ConfigPathList FindingKind = "colon-list"
	// ConfigPathOtherDir means config_path names one directory, but not the
	// one regmend writes hosts.toml files to.
	ConfigPathOtherDir FindingKind = "other-dir"
)

// Finding is the result of CheckCRIConfigPath.
type Finding struct {
	// Kind classifies the finding.
	Kind FindingKind
	// ConfigFile is the containerd config file that was checked.
	ConfigFile string
	// SetIn is the file that sets config_path: ConfigFile or one of the
	// files it imports. Empty when config_path is not set.
	SetIn string
	// Version is ConfigFile's config version (1 when it has none; 0 when
	// the file is missing).
	Version int
	// ConfigPath is the effective CRI registry config_path, "" if unset.
	ConfigPath string
	// Message explains the finding for a human.
	Message string
	// FixIn is the file to change: SetIn when config_path is set (a later
	// import would override a fix in ConfigFile), else ConfigFile. Empty
	// when Kind is ConfigPathOK.
	FixIn string
	// Fix is the TOML that sets config_path in FixIn (for
	// ConfigFileMissing: the whole file to create), for FixIn's config
	// version; where FixIn already has the table, set the key in it.
	// containerd must be restarted afterwards. Empty when Kind is
	// ConfigPathOK.
	Fix string
}

// OK reports whether containerd's CRI plugin will read the hosts.toml files
// regmend writes.
func (f Finding) OK() bool { return f.Kind == ConfigPathOK }

// DefaultHostsDir is the hosts directory suggested when none is given.
const DefaultHostsDir = "/etc/containerd/certs.d"

// CheckCRIConfigPath reads containerd's config file (and the files it
// imports) and reports whether the CRI plugin's registry config_path is set
// to a single directory, and, if hostsDir is not empty, whether that
// directory is hostsDir. The key depends on the config version:
// [plugins."io.containerd.cri.v1.images".registry] for version 3 and later
// (containerd 2.x), [plugins."io.containerd.grpc.v1.cri".registry] for
// version 2 (containerd 1.6/1.7, also read by 2.x), [plugins.cri.registry]
// for version 1. A missing config file is a finding, not an error; a file
// that cannot be read or parsed is an error.
func CheckCRIConfigPath(containerdConfigTOMLPath, hostsDir string) (Finding, error) {
	f := Finding{ConfigFile: containerdConfigTOMLPath}
	dir := hostsDir
	if dir == "" {
		dir = DefaultHostsDir
	}
	if _, err := os.Stat(containerdConfigTOMLPath); errors.Is(err, fs.ErrNotExist) {
		f.Kind = ConfigFileMissing
		f.Message = fmt.Sprintf("%s does not exist, so containerd runs with its defaults: containerd 2.x then uses "+
			"config_path %q, which its CRI image pulls do not split at the colon, and 1.6/1.7 use no hosts.toml at all; "+
			"either way regmend's hosts.toml files are ignored. Create the file with the content below (version 2 works "+
			"with containerd 1.6, 1.7 and 2.x) and restart containerd:\n", containerdConfigTOMLPath, criDefaultConfigPath)
		f.FixIn, f.Fix = containerdConfigTOMLPath, "version = 2\n\n"+fixFor(2, dir)
		f.Message += f.Fix
		return f, nil
	}

	files, err := LoadContainerdConfig(containerdConfigTOMLPath)
	if err != nil {
		return Finding{}, err
	}
	return CheckCRIConfigPathOf(containerdConfigTOMLPath, files, hostsDir), nil
}

// CheckCRIConfigPathOf is CheckCRIConfigPath on a config already loaded
// (LoadContainerdConfig of containerdConfigTOMLPath), for a caller that
// reads more of it.
func CheckCRIConfigPathOf(containerdConfigTOMLPath string, loaded []ContainerdConfig, hostsDir string) Finding {
	f := Finding{ConfigFile: containerdConfigTOMLPath}
	dir := hostsDir
	if dir == "" {
		dir = DefaultHostsDir
	}
	files := make([]configFile, len(loaded))
	for i, c := range loaded {
		plugins, _ := c.Tree["plugins"].(map[string]any)
		files[i] = configFile{path: c.Path, version: c.Version, plugins: plugins}
	}
	f.Version = files[0].version
	var misplaced []string
	fixVersion := f.Version
	f.FixIn = containerdConfigTOMLPath
	for _, c := range files {
		if v, ok := c.configPath(); ok {
			f.ConfigPath, f.SetIn = v, c.path
			f.FixIn, fixVersion = c.path, c.version
		}
		misplaced = append(misplaced, c.misplaced()...)
	}
	hint := ""
	if len(misplaced) > 0 {
		hint = " (config_path under " + strings.Join(misplaced, ", ") + " is ignored for this config version)"
	}
	switch list := filepath.SplitList(f.ConfigPath); {
	case f.ConfigPath == "":
		f.Kind = ConfigPathUnset
		v1 := "containerd 1.6/1.7 then read no hosts.toml for kubelet's pulls; "
		if f.Version >= 3 {
			v1 = "" // containerd 1.x does not read config version 3.
		}
		f.Message = fmt.Sprintf("%s does not set the CRI registry config_path%s. %scontainerd 2.x uses %q, which its "+
			"CRI image pulls (transfer service) do not split at the colon, so hosts.toml files are silently ignored. "+
			"Set config_path to one directory and restart containerd.", containerdConfigTOMLPath, hint, v1, criDefaultConfigPath)
	case len(list) != 1:
		f.Kind = ConfigPathList
		v1 := ""
		if fixVersion <= 2 {
			v1 = " (containerd 1.6/1.7 split it, but an upgrade to 2.x breaks this silently)"
		}
		f.Message = fmt.Sprintf("%s sets the CRI registry config_path to %q, a colon-separated list. containerd 2.x pulls "+
			"CRI images through the transfer service, which takes the whole value as one directory name, so hosts.toml "+
			"files are silently ignored%s. Set it to one directory and restart containerd.", f.SetIn, f.ConfigPath, v1)
	case hostsDir != "" && !sameDir(f.ConfigPath, hostsDir):
		f.Kind = ConfigPathOtherDir
		f.Message = fmt.Sprintf("%s sets the CRI registry config_path to %q, but regmend writes hosts.toml files under %q, "+
			"so containerd will not see them. Point config_path at %q (and restart containerd), or run regmend with "+
			"that directory.", f.SetIn, f.ConfigPath, hostsDir, hostsDir)
	default:
		f.Kind = ConfigPathOK
		f.Message = fmt.Sprintf("%s sets the CRI registry config_path to %q.", f.SetIn, f.ConfigPath)
		f.FixIn = ""
		return f
	}
	f.Fix = fixFor(fixVersion, dir)
	f.Message += fmt.Sprintf(" In %s (config version %d):\n%s", f.FixIn, fixVersion, f.Fix)
	return f
}

// criDefaultConfigPath is containerd 2.x's default CRI registry config_path
// on Linux (plugins/cri/images/plugin.go).
const criDefaultConfigPath = "/etc/containerd/certs.d:/etc/docker/certs.d"

// criTables returns the tables that hold the CRI registry settings for a
// config version, as key paths below "plugins".
func criTables(version int) [][]string {
	switch {
	case version >= 3:
		return [][]string{{"io.containerd.cri.v1.images", "registry"}}
	case version == 2:
		return [][]string{{"io.containerd.grpc.v1.cri", "registry"}}
	default: // version 1 names plugins by short name; full names pass through.
		return [][]string{{"cri", "registry"}, {"io.containerd.grpc.v1.cri", "registry"}}
	}
}

func tableName(path []string) string {
	parts := []string{"plugins"}
	for _, p := range path {
		if strings.Contains(p, ".") {
			p = quote(p)
		}
		parts = append(parts, p)
	}
	return "[" + strings.Join(parts, ".") + "]"
}

// fixFor is the TOML that sets config_path to dir for a config version.
func fixFor(version int, dir string) string {
	return tableName(criTables(version)[0]) + "\n  config_path = " + quote(dir) + "\n"
}

func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, erra := filepath.EvalSymlinks(a)
	rb, errb := filepath.EvalSymlinks(b)
	return erra == nil && errb == nil && ra == rb
}

// configFile is one decoded containerd config file.
type configFile struct {
	path    string
	version int
	plugins map[string]any
}

// configPath returns the CRI registry config_path the file sets, if any.
func (c configFile) configPath() (string, bool) {
	for _, t := range criTables(c.version) {
		if v, ok := lookup(c.plugins, append(t, "config_path")...).(string); ok {
			return v, true
		}
	}
	return "", false
}

// misplaced lists the tables of other config versions where the file sets
// config_path to no effect.
func (c configFile) misplaced() []string {
	own := criTables(c.version)
	var out []string
	for _, t := range [][]string{{"cri", "registry"}, {"io.containerd.grpc.v1.cri", "registry"}, {"io.containerd.cri.v1.images", "registry"}} {
		if slices.ContainsFunc(own, func(o []string) bool { return slices.Equal(o, t) }) {
			continue
		}
		if _, ok := lookup(c.plugins, append(t, "config_path")...).(string); ok {
			out = append(out, tableName(t)+" in "+c.path)
		}
	}
	return out
}

func lookup(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// ContainerdConfig is one decoded containerd config file, with its text
// (for line numbers).
type ContainerdConfig struct {
	Path    string
	Version int
	Tree    map[string]any
	Text    []byte
}

// LoadContainerdConfig decodes path and, as containerd does, the files it
// imports (relative to the importing file, glob patterns expanded), in
// load order: a setting in a later file overrides an earlier one.
func LoadContainerdConfig(path string) ([]ContainerdConfig, error) {
	var out []ContainerdConfig
	seen := map[string]bool{}
	for pending := []string{path}; len(pending) > 0; pending = pending[1:] {
		p := pending[0]
		if seen[p] {
			continue
		}
		seen[p] = true
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var tree map[string]any
		if err := toml.Unmarshal(b, &tree); err != nil {
			return nil, fmt.Errorf("%s: cannot parse containerd config: %v: %w", p, err, errdefs.ErrFailedPrecondition)
		}
		c := ContainerdConfig{Path: p, Version: 1, Tree: tree, Text: b}
		if v, ok := tree["version"].(int64); ok && v > 0 {
			c.Version = int(v)
		}
		out = append(out, c)
		imports, _ := tree["imports"].([]any)
		for _, i := range imports {
			imp, ok := i.(string)
			if !ok {
				return nil, fmt.Errorf("%s: imports: %v is not a path: %w", p, i, errdefs.ErrFailedPrecondition)
			}
			imp = filepath.Clean(imp)
			if !filepath.IsAbs(imp) {
				imp = filepath.Join(filepath.Dir(p), imp)
			}
			if !strings.Contains(imp, "*") {
				pending = append(pending, imp)
				continue
			}
			matches, err := filepath.Glob(imp)
			if err != nil {
				return nil, fmt.Errorf("%s: import %q: %w", p, imp, err)
			}
			pending = append(pending, matches...)
		}
	}
	return out, nil
}

// CRIRegistryTables returns the tables that hold the CRI registry settings
// for a config version, as key paths from the top of the file.
func CRIRegistryTables(version int) [][]string {
	var out [][]string
	for _, t := range criTables(version) {
		out = append(out, append([]string{"plugins"}, t...))
	}
	return out
}
