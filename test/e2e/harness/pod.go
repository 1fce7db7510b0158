package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// Pod runs a rendered pod spec's containers on a harness containerd with
// `ctr run --net-host`, the way the kubelet runs them through CRI: init
// containers one after the other to completion, then the app container,
// its postStart hook as an exec in it, and on Stop its preStop hook, SIGTERM
// and removal. hostPath volumes are bind-mounted at their mountPath,
// emptyDirs are private directories, $(VAR) in arguments is expanded from
// the container's environment, and downward-API fields come from the map
// given to NewPod. ConfigMap volumes hold what SetConfigMap gives them.
// Secret volumes are not supported.
//
// Images must already be in the node's namespace and unpacked for the native
// snapshotter (pull them with Containerd.Pull, as the kubelet would), and
// containerd-shim-runc-v2 and runc must be on containerd's PATH.
type Pod struct {
	t         testing.TB
	c         *Containerd
	name      string
	spec      PodSpec
	fields    map[string]string
	emptyDirs map[string]string
	logs      string
	app       *Container
	cl        *client.Client
	// configMaps: ConfigMap name → its files' directory (configmap.go)
	configMaps map[string]string
}

func (p *Pod) client() *client.Client {
	if p.cl == nil {
		p.cl = p.c.Client()
	}
	return p.cl
}

// NewPod prepares spec to run on c as pod name. fields gives the values of
// downward-API fieldRefs (e.g. "status.hostIP": "127.0.0.1").
func NewPod(t testing.TB, c *Containerd, name string, spec PodSpec, fields map[string]string) *Pod {
	t.Helper()
	return &Pod{t: t, c: c, name: name, spec: spec, fields: fields, emptyDirs: map[string]string{}, logs: t.TempDir()}
}

// RunInit runs every init container to completion, in order, and returns
// their output. The first that fails stops the pod's start, as in Kubernetes.
func (p *Pod) RunInit(ctx context.Context) (string, error) {
	p.t.Helper()
	var all strings.Builder
	for _, ctn := range p.spec.InitContainers {
		args := append([]string{"run", "--rm"}, p.runArgs(ctx, ctn)...)
		out, err := p.c.Ctr(ctx, args...)
		fmt.Fprintf(&all, "--- init container %s:\n%s", ctn.Name, out)
		if err != nil {
			return all.String(), fmt.Errorf("init container %s: %w", ctn.Name, err)
		}
	}
	return all.String(), nil
}

// Start starts the pod's only app container, detached, with its output in
// a log printed if the test fails, then runs its postStart hook and returns
// the hook's output.
func (p *Pod) Start(ctx context.Context) (string, error) {
	p.t.Helper()
	if len(p.spec.Containers) != 1 {
		p.t.Fatalf("pod %s: %d app containers; Pod runs exactly one", p.name, len(p.spec.Containers))
	}
	ctn := p.spec.Containers[0]
	p.app = &ctn
	id := p.id(ctn)
	logPath := filepath.Join(p.logs, ctn.Name+".log")
	DumpLogOnFailure(p.t, p.name+"/"+ctn.Name, logPath)
	p.t.Cleanup(func() { p.remove(id) })
	args := append([]string{"run", "--detach", "--log-uri", "file://" + logPath}, p.runArgs(ctx, ctn)...)
	if out, err := p.c.Ctr(ctx, args...); err != nil {
		return out, fmt.Errorf("start %s: %w", ctn.Name, err)
	}
	if ctn.Lifecycle == nil || ctn.Lifecycle.PostStart == nil || ctn.Lifecycle.PostStart.Exec == nil {
		return "", nil
	}
	return p.Exec(ctx, "poststart", ctn.Lifecycle.PostStart.Exec.Command)
}

// Exec runs argv in the running app container (ctr task exec), as the
// kubelet runs an exec hook.
func (p *Pod) Exec(ctx context.Context, execID string, argv []string) (string, error) {
	p.t.Helper()
	return p.c.Ctr(ctx, append([]string{"task", "exec", "--exec-id", execID, p.id(*p.app)}, argv...)...)
}

// Stop deletes the pod as the kubelet does: the preStop hook, then SIGTERM,
// SIGKILL after grace, then the task and container (and its snapshot) are
// removed. It returns the hook's output and error; the container is removed
// whatever the hook did.
func (p *Pod) Stop(ctx context.Context, grace time.Duration) (string, error) {
	p.t.Helper()
	var out string
	var hookErr error
	if l := p.app.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Exec != nil {
		out, hookErr = p.Exec(ctx, "prestop", l.PreStop.Exec.Command)
	}
	id := p.id(*p.app)
	ctr, err := p.client().LoadContainer(ctx, id)
	if err != nil {
		p.t.Fatalf("pod %s: %v", p.name, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		p.t.Fatalf("pod %s: %v", p.name, err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		p.t.Fatalf("pod %s: %v", p.name, err)
	}
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil {
		p.t.Fatalf("pod %s: SIGTERM: %v", p.name, err)
	}
	select {
	case st := <-exited:
		p.t.Logf("pod %s: %s exited with status %d after SIGTERM", p.name, p.app.Name, st.ExitCode())
	case <-time.After(grace):
		p.t.Errorf("pod %s: %s still running %s after SIGTERM; killed", p.name, p.app.Name, grace)
	}
	p.remove(id)
	return out, hookErr
}

// remove kills and deletes the container id, its task and its snapshot, if
// they still exist.
func (p *Pod) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(p.c.Socket(), client.WithDefaultNamespace(p.c.Namespace()), client.WithTimeout(5*time.Second))
	if err != nil {
		p.t.Logf("pod %s: remove %s: %v", p.name, id, err)
		return
	}
	defer cl.Close()
	ctr, err := cl.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return
	}
	if err != nil {
		p.t.Errorf("pod %s: remove %s: %v", p.name, id, err)
		return
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			p.t.Errorf("pod %s: delete task %s: %v", p.name, id, err)
		}
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		p.t.Errorf("pod %s: delete container %s: %v", p.name, id, err)
	}
}

func (p *Pod) id(c Container) string { return p.name + "-" + c.Name }

// runArgs returns `ctr run` arguments after the mode flags: host network,
// the container's mounts and environment, the image, the id and argv.
func (p *Pod) runArgs(ctx context.Context, c Container) []string {
	p.t.Helper()
	args := []string{"--net-host"}
	if c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	for _, m := range p.mounts(c) {
		args = append(args, "--mount", m)
	}
	env := p.env(c)
	for _, e := range c.Env {
		args = append(args, "--env", e.Name+"="+env[e.Name])
	}
	argv := c.Command
	if len(argv) == 0 {
		argv = p.entrypoint(ctx, c.Image)
	}
	argv = append(append([]string{}, argv...), c.Args...)
	for i := range argv {
		argv[i] = expand(argv[i], env)
	}
	return append(append(args, c.Image, p.id(c)), argv...)
}

// mounts returns the container's volume mounts as ctr --mount values, the
// shallowest first as CRI orders them, so a mount inside another one's path
// is not hidden by it. Binds are not recursive: only the directory itself is
// needed, not whatever is mounted below it on the host.
func (p *Pod) mounts(c Container) []string {
	p.t.Helper()
	ms := append([]VolumeMount{}, c.VolumeMounts...)
	sort.SliceStable(ms, func(i, j int) bool { return depth(ms[i].MountPath) < depth(ms[j].MountPath) })
	var out []string
	for _, m := range ms {
		v, ok := p.spec.Volume(m.Name)
		if !ok {
			p.t.Fatalf("pod %s: container %s mounts unknown volume %s", p.name, c.Name, m.Name)
		}
		src := p.source(v)
		opt := "bind:rw"
		if m.ReadOnly {
			opt = "bind:ro"
		}
		out = append(out, fmt.Sprintf("type=bind,src=%s,dst=%s,options=%s", src, m.MountPath, opt))
	}
	return out
}

// source returns the host directory or file behind a volume, checking a
// hostPath's type as the kubelet does.
func (p *Pod) source(v Volume) string {
	p.t.Helper()
	switch {
	case v.HostPath != nil:
		path := v.HostPath.Path
		st, err := os.Stat(path)
		switch v.HostPath.Type {
		case "DirectoryOrCreate":
			if err != nil {
				if err := os.MkdirAll(path, 0o755); err != nil {
					p.t.Fatalf("pod %s: volume %s: %v", p.name, v.Name, err)
				}
			}
		case "Directory":
			if err != nil || !st.IsDir() {
				p.t.Fatalf("pod %s: volume %s: %s is not a directory", p.name, v.Name, path)
			}
		case "File":
			if err != nil || !st.Mode().IsRegular() {
				p.t.Fatalf("pod %s: volume %s: %s is not a file", p.name, v.Name, path)
			}
		}
		return path
	case v.EmptyDir != nil:
		if d, ok := p.emptyDirs[v.Name]; ok {
			return d
		}
		d := filepath.Join(p.logs, "emptydir-"+v.Name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			p.t.Fatal(err)
		}
		p.emptyDirs[v.Name] = d
		return d
	case v.ConfigMap != nil:
		if d, ok := p.configMaps[v.ConfigMap.Name]; ok {
			return d
		}
		p.t.Fatalf("pod %s: volume %s: ConfigMap %s not set (SetConfigMap)", p.name, v.Name, v.ConfigMap.Name)
	}
	p.t.Fatalf("pod %s: volume %s: only hostPath, emptyDir and ConfigMap volumes are supported", p.name, v.Name)
	return ""
}

// env returns the container's environment with downward-API values filled.
func (p *Pod) env(c Container) map[string]string {
	p.t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := p.fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				p.t.Fatalf("pod %s: env %s: no value given for field %s", p.name, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom != nil:
			p.t.Fatalf("pod %s: env %s: only fieldRef is supported", p.name, e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

// entrypoint returns the image config's Entrypoint, which the kubelet runs
// when a container gives args but no command.
func (p *Pod) entrypoint(ctx context.Context, ref string) []string {
	p.t.Helper()
	img, err := p.client().GetImage(ctx, ref)
	if err != nil {
		p.t.Fatalf("pod %s: image %s: %v", p.name, ref, err)
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		p.t.Fatalf("pod %s: image %s config: %v", p.name, ref, err)
	}
	return spec.Config.Entrypoint
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with the variable's value, as the kubelet does in
// command and args; an unknown reference stays as written.
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// MountsUnder returns the mount points in /proc/mounts at or below dir: a
// test that ran containers checks that none are left.
func MountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			out = append(out, f[1])
		}
	}
	return out, nil
}
