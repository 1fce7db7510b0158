package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SetConfigMap gives the pod's ConfigMap volumes that name the ConfigMap
// name the files data holds (key → content), laid out as the kubelet lays
// them out: each key is a symlink to ..data/key, and ..data a symlink to a
// timestamped directory holding the files. Call it before the containers
// start; UpdateConfigMap changes it as the kubelet does.
func (p *Pod) SetConfigMap(name string, data map[string]string) {
	p.t.Helper()
	if p.configMaps == nil {
		p.configMaps = map[string]string{}
	}
	dir := filepath.Join(p.logs, "configmap-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	p.configMaps[name] = dir
	p.writeConfigMap(dir, data)
	for key := range data {
		if err := os.Symlink(filepath.Join("..data", key), filepath.Join(dir, key)); err != nil {
			p.t.Fatal(err)
		}
	}
}

// UpdateConfigMap replaces the files of ConfigMap name as the kubelet does
// on an update: a new timestamped directory, then ..data swapped to it with
// one rename, so a reader sees the old files or the new ones, never a mix.
// The keys must be those SetConfigMap was given.
func (p *Pod) UpdateConfigMap(name string, data map[string]string) {
	p.t.Helper()
	dir, ok := p.configMaps[name]
	if !ok {
		p.t.Fatalf("pod %s: no ConfigMap %s set", p.name, name)
	}
	p.writeConfigMap(dir, data)
}

// writeConfigMap writes data into a new version directory and points
// ..data at it, removing the version it replaced.
func (p *Pod) writeConfigMap(dir string, data map[string]string) {
	p.t.Helper()
	version := fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		p.t.Fatal(err)
	}
	for key, content := range data {
		if err := os.WriteFile(filepath.Join(dir, version, key), []byte(content), 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		p.t.Fatal(err)
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
}
