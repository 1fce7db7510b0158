package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// DecodeConfig reads TOML settings over the defaults, with LoadFile's rules:
// an unknown key is an error naming it, and so is a value of the wrong type.
// The containerd plugin uses it for its config section.
func DecodeConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			keys := make([]string, len(sm.Errors))
			for i, e := range sm.Errors {
				keys[i] = strings.Join(e.Key(), ".")
			}
			return cfg, fmt.Errorf("unknown setting %s: %w", strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
		}
		var de *toml.DecodeError
		if errors.As(err, &de) && len(de.Key()) > 0 {
			return cfg, fmt.Errorf("%s: %v: %w", strings.Join(de.Key(), "."), err, errdefs.ErrInvalidArgument)
		}
		return cfg, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	return cfg, nil
}
