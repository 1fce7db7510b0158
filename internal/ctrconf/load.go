package ctrconf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// file is one decoded containerd config file, with its text for line
// numbers.
type file struct {
	path    string
	version int
	tree    map[string]any
	text    []byte
}

// load decodes path and, as containerd does, the files it imports
// (relative to the importing file, glob patterns expanded), in load order:
// a setting in a later file overrides an earlier one.
func load(path string) ([]file, error) {
	var out []file
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
		f := file{path: p, version: 1, tree: tree, text: b}
		if v, ok := tree["version"].(int64); ok && v > 0 {
			f.version = int(v)
		}
		out = append(out, f)
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

// get returns the value at a key path (from the top of the file).
func (f file) get(path ...string) (any, bool) {
	var v any = f.tree
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

// line returns the line that sets the key path, 0 if none does: a key
// under its table header, as a dotted key, or inside an inline table (the
// line of the key holding the inline table).
func (f file) line(path ...string) int {
	p := unstable.Parser{}
	p.Reset(f.text)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.Table && e.Kind != unstable.ArrayTable && e.Kind != unstable.KeyValue {
			continue // Key panics on anything else
		}
		var keys []string
		for it := e.Key(); it.Next(); {
			keys = append(keys, string(it.Node().Data))
		}
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keys
		case unstable.KeyValue:
			full := append(slices.Clone(table), keys...)
			exact := slices.Equal(full, path)
			inline := len(full) < len(path) && slices.Equal(full, path[:len(full)]) && e.Value().Kind == unstable.InlineTable
			if exact || inline {
				return p.Shape(e.Raw).Start.Line
			}
		}
	}
	return 0
}

// criRegistryTables are the tables holding CRI's registry settings for a
// config version, as key paths from the top of the file.
func criRegistryTables(version int) [][]string {
	switch {
	case version >= 3:
		return [][]string{{"plugins", "io.containerd.cri.v1.images", "registry"}}
	case version == 2:
		return [][]string{{"plugins", "io.containerd.grpc.v1.cri", "registry"}}
	default: // version 1 names plugins by their short name; full names pass.
		return [][]string{{"plugins", "cri", "registry"}, {"plugins", "io.containerd.grpc.v1.cri", "registry"}}
	}
}

// tableHeader writes a key path as a TOML table header.
func tableHeader(path []string) string {
	parts := slices.Clone(path)
	for i, p := range parts {
		if strings.ContainsAny(p, ".") {
			parts[i] = `"` + p + `"`
		}
	}
	return "[" + strings.Join(parts, ".") + "]"
}
