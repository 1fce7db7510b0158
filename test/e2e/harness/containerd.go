package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
)

// DefaultNamespace is the containerd namespace CRI (and so kubelet) uses.
const DefaultNamespace = "k8s.io"

// ContainerdOptions configures StartContainerd. The zero value is valid.
type ContainerdOptions struct {
	// Binary is the containerd binary; default Tool(t, ToolContainerd). Set it
	// to run a custom build such as containerd-regmend.
	Binary string
	// Name labels the daemon in logs; default "containerd".
	Name string
	// Namespace is used by Ctr, Client and HasContent; default "k8s.io".
	Namespace string
	// LogLevel is containerd's [debug] level; default "debug" (resolve and
	// fetch decisions are logged at debug).
	LogLevel string
	// ExtraConfig is appended verbatim to config.toml, e.g. a
	// [plugins."io.containerd.server.v1.regmend"] section. It must not repeat a
	// table the harness writes (see ConfigPath for the generated file).
	ExtraConfig string
	// ConfigVersion is the generated config.toml's format: 0 or 3 for
	// containerd 2.x (the default), 2 for containerd 1.6/1.7, whose CRI
	// plugin reads [plugins."io.containerd.grpc.v1.cri"]. Set Binary to
	// such a containerd (e.g. Debian's /usr/bin/containerd) with 2.
	ConfigVersion int
}

// Containerd is a throwaway containerd daemon with CRI enabled, the native
// snapshotter for CRI images, and a registry hosts directory owned by the
// harness. Its root, state and sockets live in a short private directory under
// /tmp (unix socket paths must stay under 108 bytes).
type Containerd struct {
	t        testing.TB
	name     string
	binary   string
	crictl   string
	ctr      string
	ns       string
	dir      string
	socket   string
	hostsDir string
	config   string
	crictlCf string
	logPath  string
	proc     *Proc
	cl       *client.Client
}

// StartContainerd writes config.toml, starts containerd and waits until both
// its API (Version) and CRI (`crictl info`) answer. The daemon is stopped and
// its directory removed on cleanup.
func StartContainerd(t testing.TB, opts ContainerdOptions) *Containerd {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Tool(t, ToolContainerd)
	}
	if opts.Name == "" {
		opts.Name = "containerd"
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	// Tool lookups first, so a missing crictl skips before anything starts.
	crictl, ctr := Tool(t, ToolCrictl), Tool(t, ToolCtr)
	logDir := t.TempDir()
	dir, err := os.MkdirTemp("/tmp", "rmd-")
	if err != nil {
		t.Fatalf("containerd dir: %v", err)
	}
	// Registered before the daemon's stop, so it runs after it.
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	c := &Containerd{
		t:        t,
		name:     opts.Name,
		binary:   opts.Binary,
		crictl:   crictl,
		ctr:      ctr,
		ns:       opts.Namespace,
		dir:      dir,
		socket:   filepath.Join(dir, "c.sock"),
		hostsDir: filepath.Join(dir, "hosts"),
		config:   filepath.Join(dir, "config.toml"),
		crictlCf: filepath.Join(dir, "crictl.yaml"),
		logPath:  filepath.Join(logDir, sanitize(opts.Name)+".log"),
	}
	for _, d := range []string{c.hostsDir, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("containerd dir: %v", err)
		}
	}
	var cfg string
	switch opts.ConfigVersion {
	case 0, 3:
		cfg = containerdConfig(dir, c.socket, c.hostsDir, opts.LogLevel)
	case 2:
		cfg = containerdConfigV2(dir, c.socket, c.hostsDir, opts.LogLevel)
	default:
		t.Fatalf("containerd: unsupported ConfigVersion %d (want 2 or 3)", opts.ConfigVersion)
	}
	cfg += "\n" + opts.ExtraConfig + "\n"
	if err := os.WriteFile(c.config, []byte(cfg), 0o644); err != nil {
		t.Fatalf("write containerd config: %v", err)
	}
	crictlYAML := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", c.socket, c.socket)
	if err := os.WriteFile(c.crictlCf, []byte(crictlYAML), 0o644); err != nil {
		t.Fatalf("write crictl config: %v", err)
	}
	c.Start()
	return c
}

// containerdConfig returns the generated config.toml (before ExtraConfig).
func containerdConfig(dir, socket, hostsDir, level string) string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
temp = %[3]q

[grpc]
  address = %[4]q

[ttrpc]
  address = %[5]q

[debug]
  level = %[6]q

# Keep everything inside the private directory; nothing global is touched.
[plugins."io.containerd.internal.v1.opt"]
  path = %[7]q

# NRI would listen on the global /var/run/nri/nri.sock; two nodes would clash.
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"

[plugins."io.containerd.cri.v1.images".registry]
  config_path = %[8]q

# CRI pulls through the transfer service, which unpacks only into the
# snapshotters listed here (the default lists overlayfs only).
[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = %[9]q
  snapshotter = "native"
  differ = "walking"
`,
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "tmp"),
		socket, socket+".ttrpc", level, filepath.Join(dir, "opt"), hostsDir,
		"linux/"+runtime.GOARCH)
}

// containerdConfigV2 returns the generated config.toml (before ExtraConfig) in
// format version 2, for containerd 1.6/1.7: the same private directories,
// sockets and hosts directory as containerdConfig. Their CRI pulls go through
// the CRI plugin itself (no transfer service), which unpacks into its own
// snapshotter.
func containerdConfigV2(dir, socket, hostsDir, level string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
temp = %[3]q

[grpc]
  address = %[4]q

[ttrpc]
  address = %[5]q

[debug]
  level = %[6]q

# Keep everything inside the private directory; nothing global is touched.
[plugins."io.containerd.internal.v1.opt"]
  path = %[7]q

# containerd 1.7's NRI would listen on the global /var/run/nri/nri.sock (1.6
# has no NRI and ignores this table).
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = %[8]q
`,
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "tmp"),
		socket, socket+".ttrpc", level, filepath.Join(dir, "opt"), hostsDir)
}

// Proc returns the running daemon's process (a new one after each Start).
func (c *Containerd) Proc() *Proc { return c.proc }

// Socket returns the path of containerd's gRPC unix socket.
func (c *Containerd) Socket() string { return c.socket }

// HostsDir returns the registry hosts directory (CRI's config_path); pass it to
// `ctr images pull --hosts-dir`.
func (c *Containerd) HostsDir() string { return c.hostsDir }

// Namespace returns the namespace used by Ctr, Client and HasContent.
func (c *Containerd) Namespace() string { return c.ns }

// Dir returns the private directory holding root, state, sockets and config.
func (c *Containerd) Dir() string { return c.dir }

// ConfigPath returns the path of the generated config.toml.
func (c *Containerd) ConfigPath() string { return c.config }

// LogPath returns the daemon's log file (shared by restarts).
func (c *Containerd) LogPath() string { return c.logPath }

// Log returns the daemon's log.
func (c *Containerd) Log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// Start (re)starts the daemon with the same config and state and waits until
// its API and CRI answer. It fails the test if the daemon is already running.
func (c *Containerd) Start() {
	c.t.Helper()
	if c.proc != nil && !c.proc.Exited() {
		c.t.Fatalf("%s: Start while running", c.name)
	}
	c.proc = StartProc(c.t, ProcSpec{
		Name:    c.name,
		Path:    c.binary,
		Args:    []string{"--config", c.config},
		LogPath: c.logPath,
	})
	err := WaitFor(30*time.Second, c.proc, c.name+" API", func() error {
		cl, err := client.New(c.socket, client.WithTimeout(time.Second))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = cl.Version(ctx)
		return err
	})
	if err == nil {
		err = WaitFor(30*time.Second, c.proc, c.name+" CRI", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := c.Crictl(ctx, "info")
			return err
		})
	}
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", c.name, err, TailFile(c.logPath, 50))
	}
}

// Stop stops the daemon; its state is kept for Start.
func (c *Containerd) Stop() {
	c.t.Helper()
	if c.proc == nil {
		return
	}
	if err := c.proc.Stop(); err != nil {
		c.t.Logf("%s: %v", c.name, err)
	}
}

// Crictl runs `crictl -r unix://SOCK -i unix://SOCK --timeout 60s ARGS...`
// and returns its combined output. The error, if any, includes the output.
func (c *Containerd) Crictl(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"--config", c.crictlCf, "-r", "unix://" + c.socket, "-i", "unix://" + c.socket, "--timeout", "60s"}, args...)
	return run(ctx, c.crictl, all, nil)
}

// Pull pulls ref through CRI, as kubelet does (`crictl pull REF`).
func (c *Containerd) Pull(ctx context.Context, ref string) (string, error) {
	return c.Crictl(ctx, "pull", ref)
}

// Ctr runs `ctr -a SOCK -n NAMESPACE ARGS...` with CONTAINERD_SNAPSHOTTER=native
// and returns its combined output. Pulls need `--hosts-dir` + HostsDir() to
// reach the test registries.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"-a", c.socket, "-n", c.ns}, args...)
	return run(ctx, c.ctr, all, []string{"CONTAINERD_SNAPSHOTTER=native"})
}

// Client returns a new containerd client for the daemon with Namespace as its
// default namespace; it is closed on cleanup.
func (c *Containerd) Client() *client.Client {
	c.t.Helper()
	cl, err := client.New(c.socket, client.WithDefaultNamespace(c.ns), client.WithTimeout(10*time.Second))
	if err != nil {
		c.t.Fatalf("%s: client: %v", c.name, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// HasContent reports whether the daemon's content store holds dgst (committed).
func (c *Containerd) HasContent(ctx context.Context, dgst digest.Digest) bool {
	c.t.Helper()
	if c.cl == nil {
		c.cl = c.Client()
	}
	_, err := c.cl.ContentStore().Info(ctx, dgst)
	if errdefs.IsNotFound(err) {
		return false
	}
	if err != nil {
		c.t.Fatalf("%s: content info %s: %v", c.name, dgst, err)
	}
	return true
}

// HostsTOML returns a hosts.toml for a plain-HTTP registry at addr
// ("127.0.0.1:PORT"): server and a first [host] entry for the registry itself
// (pull, resolve, push), followed by extra text such as further host entries
// made with HostEntry (they are tried after the registry, in order).
func HostsTOML(addr string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server = %q\n\n", "http://"+addr)
	b.WriteString(HostEntry("http://"+addr, "pull", "resolve", "push"))
	for _, e := range extra {
		b.WriteString("\n")
		b.WriteString(e)
	}
	return b.String()
}

// HostEntry returns a hosts.toml [host."URL"] table with the capabilities.
func HostEntry(url string, capabilities ...string) string {
	q := make([]string, len(capabilities))
	for i, c := range capabilities {
		q[i] = fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("[host.%q]\n  capabilities = [%s]\n", url, strings.Join(q, ", "))
}

// WriteHostsTOML writes HostsDir()/<registry>/hosts.toml (registry is the host
// as it appears in image references, e.g. "127.0.0.1:PORT"). containerd reads
// it on every pull, so no restart is needed.
func (c *Containerd) WriteHostsTOML(registry, content string) {
	c.t.Helper()
	d := filepath.Join(c.hostsDir, registry)
	if err := os.MkdirAll(d, 0o755); err != nil {
		c.t.Fatalf("hosts dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(content), 0o644); err != nil {
		c.t.Fatalf("write hosts.toml: %v", err)
	}
}

// UseRegistry points the node at reg over plain HTTP: it writes
// HostsTOML(reg.Addr(), extraHosts...) for reg.Addr().
func (c *Containerd) UseRegistry(reg *Registry, extraHosts ...string) {
	c.t.Helper()
	c.WriteHostsTOML(reg.Addr(), HostsTOML(reg.Addr(), extraHosts...))
}

func run(ctx context.Context, bin string, args, env []string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
