package ctrconf

import (
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/regmend/regmend/internal/hostsfile"
)

// file is one decoded containerd config file, with its text for line
// numbers.
type file struct{ hostsfile.ContainerdConfig }

// wrap gives loaded files the lookups this package needs.
func wrap(loaded []hostsfile.ContainerdConfig) []file {
	out := make([]file, len(loaded))
	for i, c := range loaded {
		out[i] = file{c}
	}
	return out
}

// get returns the value at a key path (from the top of the file).
func (f file) get(path ...string) (any, bool) {
	var v any = f.Tree
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
	p.Reset(f.Text)
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
