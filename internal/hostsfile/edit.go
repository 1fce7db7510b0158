package hostsfile

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// hostFields mirrors the per-host settings of containerd's hostFileConfig
// (same TOML names, so go-toml matches keys exactly as containerd does).
type hostFields struct {
	Capabilities []string       `toml:"capabilities"`
	CACert       any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath *bool          `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

// fileFields mirrors the whole of containerd's hosts.toml.
type fileFields struct {
	hostFields
	Server string                `toml:"server"`
	Hosts  map[string]hostFields `toml:"host"`
}

var (
	mirrorCaps   = []string{"pull", "resolve"}
	registryCaps = []string{"pull", "resolve", "push"}
)

// target is what Ensure is asked to arrange.
type target struct {
	registry      string
	header, token string // the mirror token's header (WithMirrorToken)
	mirror        endpoint
	mirrorKey     string
	defaultKey    string // registry's host key when the file sets no server
	defaultNoTLSV bool   // containerd skips TLS verification for defaultKey
	record        string // modeRecord, put above the token when Ensure tightens the mode
}

// edit returns src changed so that t.mirror is the last [host] entry, with
// capabilities pull and resolve, and the registry's own endpoint is an
// explicit [host] entry before it. src must be a hosts.toml containerd loads.
// Text outside the sections it moves or adds is left byte for byte.
func edit(src []byte, t target) ([]byte, error) {
	d, err := scan(src)
	if err != nil {
		return nil, err
	}
	var cfg fileFields
	if err := toml.Unmarshal(src, &cfg); err != nil {
		return nil, err
	}
	eol := eolOf(src)

	regKey, isDefault, err := serverKey(cfg.Server, t)
	if err != nil {
		return nil, err
	}
	regEP, err := parseEndpoint(regKey)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", cfg.Server, err)
	}
	if regEP.sameHost(t.mirror) {
		return nil, fmt.Errorf("the mirror %s is the registry's own endpoint %s: %w", t.mirrorKey, regKey, errdefs.ErrInvalidArgument)
	}

	// Find regmend's sections and the registry's own host entry.
	var mirrorKeys []string
	haveRegistry := false
	for i := range d.sections {
		s := &d.sections[i]
		k := s.hostKey()
		if k == "" {
			continue
		}
		ep, err := parseEndpoint(k)
		if err != nil {
			return nil, fmt.Errorf("host %q: %w", k, err)
		}
		switch {
		case ep.sameHost(t.mirror) && !ep.same(t.mirror):
			return nil, fmt.Errorf("[host.%s] is the mirror's host with another scheme than %s; remove it or use its URL: %w",
				quote(k), t.mirrorKey, errdefs.ErrFailedPrecondition)
		case ep.same(t.mirror):
			if !slices.Contains(mirrorKeys, k) {
				mirrorKeys = append(mirrorKeys, k)
			}
		case ep.same(regEP):
			if caps := cfg.Hosts[k].Capabilities; len(caps) > 0 && !(hasCap(caps, "pull") && hasCap(caps, "resolve")) {
				return nil, fmt.Errorf("the registry's entry [host.%s] has capabilities %q without both pull and resolve, "+
					"so containerd would ask regmend before the registry; add pull and resolve to it: %w",
					quote(k), caps, errdefs.ErrFailedPrecondition)
			}
			haveRegistry = true
		}
	}
	if len(mirrorKeys) > 1 {
		return nil, fmt.Errorf("the mirror is listed under several keys %q; keep one: %w", mirrorKeys, errdefs.ErrFailedPrecondition)
	}

	// Cut regmend's sections out, keep everything else in place.
	var body, moved []byte
	last := 0
	for i := range d.sections {
		s := &d.sections[i]
		if k := s.hostKey(); k == "" || !slices.Contains(mirrorKeys, k) {
			continue
		}
		body = append(body, src[last:s.start]...)
		moved = append(moved, fixMirrorSection(src, s, cfg.Hosts[s.hostKey()], eol)...)
		last = s.end
	}
	body = append(body, src[last:]...)
	if len(mirrorKeys) == 1 && !slices.ContainsFunc(d.sections, func(s section) bool {
		return s.main() && s.hostKey() == mirrorKeys[0]
	}) {
		// Only sub-tables such as [host."…".header]: give it its main table.
		moved = append([]byte(header(mirrorKeys[0], eol)+capsLine(mirrorCaps, eol)), moved...)
	}
	if len(moved) == 0 {
		moved = []byte(mirrorBlock(t.mirrorKey, eol))
	}

	// What regmend adds follows the user's text after exactly one line
	// ending (a blank line, when the file ends with a newline), so that
	// Remove can give the file back byte for byte. When regmend's entry was
	// already there and moves, there is no such original: keep it tidy.
	out := separate(body, eol)
	if len(mirrorKeys) > 0 {
		out = endBlock(body, eol)
	}
	if !haveRegistry {
		blk, err := registryBlock(regKey, cfg.hostFields, isDefault, isDefault && t.defaultNoTLSV, eol)
		if err != nil {
			return nil, err
		}
		out = append(append(out, blk...), eol...)
	}
	// The moved text may end with the blank lines that followed it.
	return append(out, endLine(bytes.TrimRight(moved, " \t\r\n"), eol)...), nil
}

// serverKey returns the registry's own endpoint, as a host key, for a file's
// server setting: the server, or containerd's default endpoint for the
// registry (isDefault) when server is empty or names no host (containerd then
// fills in the default).
func serverKey(server string, t target) (key string, isDefault bool, err error) {
	if server == "" {
		return t.defaultKey, true, nil
	}
	if !strings.HasPrefix(server, "http") {
		server = "https://" + server
	}
	ep, err := parseEndpoint(server)
	if err != nil {
		return "", false, fmt.Errorf("server %q: %w", server, err)
	}
	if ep.host == "" {
		return t.defaultKey, true, nil
	}
	return server, false, nil
}

// fixMirrorSection returns the text of one of regmend's sections, with its
// capabilities set to pull and resolve if it is the main table and they are
// not already exactly that.
func fixMirrorSection(src []byte, s *section, h hostFields, eol string) []byte {
	text := slices.Clone(src[s.start:s.end])
	if !s.main() || sameCaps(h.Capabilities, mirrorCaps) {
		return endLine(text, eol)
	}
	if kv, ok := s.capabilities(); ok {
		fixed := append([]byte(nil), text[:kv.start-s.start]...)
		fixed = append(fixed, `capabilities = ["pull", "resolve"]`...)
		return endLine(append(fixed, text[kv.end-s.start:]...), eol)
	}
	at := s.headerEnd - s.start
	fixed := append([]byte(nil), text[:at]...)
	if at > 0 && fixed[at-1] != '\n' {
		fixed = append(fixed, eol...)
	}
	fixed = append(fixed, capsLine(mirrorCaps, eol)...)
	return endLine(append(fixed, text[at:]...), eol)
}

// mirrorBlock is the section regmend writes for itself.
func mirrorBlock(key, eol string) string {
	return "# regmend: a fallback mirror, tried only after the registry said 404." + eol +
		"# Keep this the last [host] entry: containerd tries them in file order." + eol +
		header(key, eol) + capsLine(mirrorCaps, eol)
}

// registryBlock is the explicit host entry for the registry's own endpoint.
// It carries the settings the file gives the server at top level, so the
// registry is reached the same way through it. For containerd's default
// server (isDefault), containerd ignores the top-level capabilities and
// override_path, and forces skip_verify on for localhost (forceSkip).
func registryBlock(key string, top hostFields, isDefault, forceSkip bool, eol string) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# The registry itself, listed so that containerd asks it before regmend." + eol)
	b.WriteString(header(key, eol))
	caps := top.Capabilities
	if len(caps) == 0 || isDefault {
		caps = registryCaps
	}
	b.WriteString(capsLine(caps, eol))
	for _, kv := range []struct {
		name string
		v    any
	}{{"ca", top.CACert}, {"client", top.Client}} {
		if kv.v == nil {
			continue
		}
		v, err := tomlValue(kv.v)
		if err != nil {
			return nil, fmt.Errorf("top-level %s: %w", kv.name, err)
		}
		b.WriteString("  " + kv.name + " = " + v + eol)
	}
	if forceSkip {
		b.WriteString("  skip_verify = true" + eol)
	} else if top.SkipVerify != nil {
		fmt.Fprintf(&b, "  skip_verify = %t%s", *top.SkipVerify, eol)
	}
	if !isDefault && top.OverridePath != nil && *top.OverridePath {
		b.WriteString("  override_path = true" + eol)
	}
	if top.DialTimeout != "" {
		b.WriteString("  dial_timeout = " + quote(top.DialTimeout) + eol)
	}
	if len(top.Header) > 0 {
		b.WriteString(eol + "[host." + quote(key) + ".header]" + eol)
		for _, name := range slices.Sorted(maps.Keys(top.Header)) {
			v, err := tomlValue(top.Header[name])
			if err != nil {
				return nil, fmt.Errorf("top-level header %q: %w", name, err)
			}
			b.WriteString("  " + quote(name) + " = " + v + eol)
		}
	}
	return []byte(b.String()), nil
}

// eolOf returns the line ending src uses: CRLF if it has any, else LF.
func eolOf(src []byte) string {
	if bytes.Contains(src, []byte("\r\n")) {
		return "\r\n"
	}
	return "\n"
}

func header(key, eol string) string { return "[host." + quote(key) + "]" + eol }

func capsLine(caps []string, eol string) string {
	q := make([]string, len(caps))
	for i, c := range caps {
		q[i] = quote(c)
	}
	return "  capabilities = [" + strings.Join(q, ", ") + "]" + eol
}

// endLine makes b end with a newline (unless it is empty).
func endLine(b []byte, eol string) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, eol...)
	}
	return b
}

// separate appends one line ending to b, unless b is empty.
func separate(b []byte, eol string) []byte {
	if len(b) == 0 {
		return b
	}
	return append(b, eol...)
}

// endBlock makes b end with a blank line (unless it is empty), so that a
// section appended after it stands apart.
func endBlock(b []byte, eol string) []byte {
	b = endLine(b, eol)
	if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n\n")) && !bytes.HasSuffix(b, []byte("\n\r\n")) {
		b = append(b, eol...)
	}
	return b
}

func hasCap(caps []string, c string) bool {
	return slices.ContainsFunc(caps, func(x string) bool { return strings.EqualFold(x, c) })
}

// sameCaps compares capability lists as the sets containerd makes of them.
func sameCaps(caps, want []string) bool {
	for _, c := range caps {
		if !hasCap(want, c) {
			return false
		}
	}
	for _, c := range want {
		if !hasCap(caps, c) {
			return false
		}
	}
	return true
}
