package plugin

import (
	"fmt"

	"github.com/pelletier/go-toml/v2"

	"github.com/regmend/regmend/internal/daemon"
)

// rawSection is the plugin's config section as containerd decodes it.
// containerd decodes every section before any plugin runs and refuses to
// start on a decode error, so a daemon.Config there would let a value of the
// wrong type (sweep_interval = "1 hour", registries = "edge:5000") stop
// containerd. Any TOML table decodes into a map; decodeSection then reads it
// into daemon.Config, and a bad value fails only this plugin.
type rawSection map[string]any

// defaultSection returns daemon.DefaultConfig() as a section, so that
// `containerd config default` lists every key with its default.
func defaultSection() *rawSection {
	b, err := toml.Marshal(daemon.DefaultConfig())
	if err != nil {
		panic(fmt.Sprintf("regmend: marshal default config: %v", err))
	}
	s := rawSection{}
	if err := toml.Unmarshal(b, &s); err != nil {
		panic(fmt.Sprintf("regmend: default config: %v", err))
	}
	return &s
}

// decodeSection reads the section containerd decoded into daemon.Config,
// with `regmend serve -c`'s rules: an unknown key is an error naming it.
func decodeSection(c any) (daemon.Config, error) {
	s, ok := c.(*rawSection)
	if !ok {
		return daemon.Config{}, fmt.Errorf("unexpected config type %T", c)
	}
	b, err := toml.Marshal(*s)
	if err != nil {
		return daemon.Config{}, fmt.Errorf("re-encode section: %w", err)
	}
	return daemon.DecodeConfig(b)
}
