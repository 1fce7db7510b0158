package ctrconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

// distro is a Kubernetes distribution that runs its own containerd and
// writes that containerd's config and certs.d itself, at each start.
type distro struct {
	name    string // k3s, rke2
	dataDir string // /var/lib/rancher/<name>
	etcDir  string // /etc/rancher/<name>
	restart string
}

var distros = []distro{
	{name: "k3s", dataDir: "/var/lib/rancher/k3s", etcDir: "/etc/rancher/k3s", restart: "the k3s service (k3s-agent on agents)"},
	{name: "rke2", dataDir: "/var/lib/rancher/rke2", etcDir: "/etc/rancher/rke2", restart: "the rke2-server or rke2-agent service"},
}

func (d distro) containerdDir() string { return d.dataDir + "/agent/etc/containerd" }
func (d distro) config() string        { return d.containerdDir() + "/config.toml" }
func (d distro) certsDir() string      { return d.containerdDir() + "/certs.d" }
func (d distro) registriesYAML() string {
	return d.etcDir + "/registries.yaml"
}

// rancher returns the distribution whose layout this node has: its
// containerd config or certs.d is the one named, or its generated config
// exists. nil for a plain containerd.
func (o *options) rancher() *distro {
	for i, d := range distros {
		if under(o.configFile, d.dataDir) || under(o.hostsDir, d.dataDir) {
			return &distros[i]
		}
		if _, err := os.Stat(o.path(d.config())); err == nil {
			return &distros[i]
		}
	}
	return nil
}

func under(p, dir string) bool {
	return p != "" && strings.HasPrefix(filepath.Clean(p)+"/", dir+"/")
}

// checkRancher names the k3s or rke2 layout, unless registries.yaml lists
// regmend's mirror after each registry's own endpoint (then what k3s
// writes at start already holds regmend's entry).
func (o *options) checkRancher() []Finding {
	d := o.rancher()
	if d == nil {
		return nil
	}
	yamlPath := d.registriesYAML()
	mirrors, lines, err := readRegistriesYAML(o.path(yamlPath))
	if err != nil {
		return []Finding{{
			Setting: yamlPath, File: yamlPath,
			Why: fmt.Sprintf("cannot read it (%v), and %s writes its containerd's certs.d from it at each start", err, d.name),
			Fix: "make it valid YAML, with the mirrors entries below\n" + o.mirrorsYAML(d, nil),
		}}
	}
	regs := o.registries
	if len(regs) == 0 {
		regs = []string{"<registry>"}
	}
	var missing []string
	line := lines["mirrors"]
	for _, r := range regs {
		if !o.listsMirror(mirrors[r]) {
			missing = append(missing, r)
			if l := lines["mirrors."+r]; l > 0 && line == lines["mirrors"] {
				line = l
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	unseen := ""
	if _, err := os.Stat(o.path(d.etcDir)); errors.Is(err, fs.ErrNotExist) {
		// In a pod that does not mount it: say so rather than claim the
		// file lacks the entry.
		unseen = fmt.Sprintf(" (%s is not visible here, so its registries.yaml could not be read: mount %s read-only "+
			"to check it, or ignore this if it already lists regmend as below)", d.etcDir, d.etcDir)
	}
	return []Finding{{
		Setting: fmt.Sprintf("%s writes %s from %s", d.name, d.certsDir(), yamlPath),
		File:    yamlPath,
		Line:    line,
		Why: fmt.Sprintf("%s rewrites its containerd's hosts.toml files from registries.yaml each time it starts, so the "+
			"entry regmend writes into certs.d is gone after %s's next restart (until regmend's pod restarts and writes it "+
			"again); listed in registries.yaml after the registry's own endpoint, regmend is in what %s writes%s", d.name, d.name, d.name, unseen),
		Fix: "in " + yamlPath + " (keep its other entries):\n" + o.mirrorsYAML(d, mirrors, missing...) + "then restart " + d.restart + "\n",
	}}
}

// listsMirror reports whether endpoints name regmend's mirror after at
// least one other endpoint (the registry's own: k3s tries them in order).
func (o *options) listsMirror(endpoints []string) bool {
	i := slices.IndexFunc(endpoints, func(e string) bool { return strings.TrimRight(e, "/") == strings.TrimRight(o.mirror, "/") })
	return i > 0
}

// mirrorsYAML is the registries.yaml mirrors entry for each registry: its
// endpoints as listed (or its hosts.toml server, or https://<registry>),
// then regmend's mirror.
func (o *options) mirrorsYAML(d *distro, have map[string][]string, regs ...string) string {
	if len(regs) == 0 {
		regs = []string{"<registry>"}
	}
	var b strings.Builder
	b.WriteString("mirrors:\n")
	for _, r := range regs {
		endpoints := slices.DeleteFunc(slices.Clone(have[r]), func(e string) bool {
			return strings.TrimRight(e, "/") == strings.TrimRight(o.mirror, "/")
		})
		if len(endpoints) == 0 {
			endpoints = []string{o.server(d, r)}
		}
		fmt.Fprintf(&b, "  %q:\n    endpoint:\n", r)
		for _, e := range append(endpoints, o.mirror) {
			fmt.Fprintf(&b, "      - %q\n", e)
		}
	}
	return b.String()
}

// server is the registry's endpoint as its hosts.toml names it, else
// https://<registry>.
func (o *options) server(d *distro, registry string) string {
	for _, dir := range []string{o.hostsDir, d.certsDir()} {
		b, err := os.ReadFile(o.path(filepath.Join(dir, registry, "hosts.toml")))
		if err != nil {
			continue
		}
		var h struct {
			Server string `toml:"server"`
		}
		if toml.Unmarshal(b, &h) == nil && h.Server != "" {
			return h.Server
		}
	}
	return "https://" + registry
}

// readRegistriesYAML returns the endpoints of each mirror in a k3s/rke2
// registries.yaml, and the lines of "mirrors" and of each mirror's key
// ("mirrors.<name>"). A missing file is empty.
func readRegistriesYAML(path string) (map[string][]string, map[string]int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, map[string]int{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var doc struct {
		Mirrors map[string]struct {
			Endpoint []string `yaml:"endpoint"`
		} `yaml:"mirrors"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, err
	}
	out := map[string][]string{}
	for name, m := range doc.Mirrors {
		out[name] = m.Endpoint
	}
	lines := map[string]int{}
	var root yaml.Node
	if yaml.Unmarshal(b, &root) == nil && len(root.Content) == 1 {
		top := root.Content[0]
		for i := 0; i+1 < len(top.Content); i += 2 {
			if top.Content[i].Value != "mirrors" {
				continue
			}
			lines["mirrors"] = top.Content[i].Line
			m := top.Content[i+1]
			for j := 0; j+1 < len(m.Content); j += 2 {
				lines["mirrors."+m.Content[j].Value] = m.Content[j].Line
			}
		}
	}
	return out, lines, nil
}
