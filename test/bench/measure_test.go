package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/test/e2e/harness"
)

// run is one exec'd command: wall time from start to exit, CPU time, and
// (from executeRSS only) the peak resident set, rusage ru_maxrss in KiB.
type run struct {
	took   time.Duration
	cpu    time.Duration // user + system
	maxRSS int64         // KiB
	out    string
}

// execute runs bin with args and fails the test if it does not exit 0. Its
// rusage ru_maxrss would not be the command's own: see rusageWrapper.
func execute(ctx context.Context, t testing.TB, bin string, args ...string) run {
	t.Helper()
	return executeEnv(ctx, t, nil, bin, args...)
}

// executeEnv is execute with env ("KEY=value") added to the environment.
func executeEnv(ctx context.Context, t testing.TB, env []string, bin string, args ...string) run {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "CONTAINERD_SNAPSHOTTER=native"), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	return run{took: took, out: out.String(), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// executeRSS runs bin with args through the rusage wrapper (see
// rusageWrapper), so run.maxRSS is the command's own peak RSS; floor is
// the least figure the wrapper can report.
func executeRSS(ctx context.Context, t testing.TB, bin string, args ...string) (r run, floor int64) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.CommandContext(ctx, self, append([]string{bin}, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERD_SNAPSHOTTER=native", rusageEnv+"=1")
	cmd.ExtraFiles = []*os.File{pw}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	pw.Close()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	b, _ := io.ReadAll(pr)
	var ns int64
	if _, err := fmt.Sscanf(string(b), "%d %d %d", &r.maxRSS, &ns, &floor); err != nil {
		t.Fatalf("rusage wrapper report %q: %v", b, err)
	}
	r.took, r.out = time.Duration(ns), out.String()
	return r, floor
}

// regmendArgs are the global flags that point regmend at node.
func regmendArgs(node *harness.Containerd, args ...string) []string {
	return append([]string{"-a", node.Socket(), "-n", node.Namespace(), "--hosts-dir", node.HostsDir()}, args...)
}

// ctrArgs are the global flags that point ctr at node.
func ctrArgs(node *harness.Containerd, args ...string) []string {
	return append([]string{"-a", node.Socket(), "-n", node.Namespace()}, args...)
}

// durations are the times of repeated runs of one measurement.
type durations []time.Duration

func (d durations) median() time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func (d durations) String() string {
	if len(d) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s (%s–%s, n=%d)", secs(d.median()), secs(slices.Min(d)), secs(slices.Max(d)), len(d))
}

func secs(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
}

// ratio is a/b as "1.23x".
func ratio(a, b time.Duration) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func medianInt(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// traffic is what a registry served during a command: requests, those of
// them that wrote (anything but GET and HEAD), and the client TCP
// connections they came on.
type traffic struct{ requests, writes, conns int }

// requests runs fn and returns the traffic reg served meanwhile, from its
// access log and (for connections) the remote addresses in its app log.
func requests(t testing.TB, reg *harness.Registry, fn func()) traffic {
	t.Helper()
	before := len(reg.Requests())
	offset := int64(0)
	if st, err := os.Stat(reg.LogPath()); err == nil {
		offset = st.Size()
	}
	fn()
	var tr traffic
	for _, r := range reg.Requests()[before:] {
		tr.requests++
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			tr.writes++
		}
	}
	tr.conns = connections(reg.LogPath(), offset)
	return tr
}

// remoteAddr is the client address distribution logs with each response.
var remoteAddr = regexp.MustCompile(`http\.request\.remoteaddr="?([^" ]+)`)

// connections counts the client addresses (one per TCP connection) in a
// registry log from offset on, leaving out the harness's own requests.
func connections(path string, offset int64) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0
	}
	b, _ := io.ReadAll(f)
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "response completed") || strings.Contains(line, harness.HarnessUserAgent) {
			continue
		}
		if m := remoteAddr.FindStringSubmatch(line); m != nil {
			seen[m[1]] = true
		}
	}
	return len(seen)
}

// emptyRegistry stops reg, deletes its storage and starts it again on the
// same address: a registry that holds nothing.
func emptyRegistry(t testing.TB, reg *harness.Registry) {
	t.Helper()
	reg.Stop()
	if err := os.RemoveAll(reg.StorageDir()); err != nil {
		t.Fatal(err)
	}
	reg.Start()
}

// deleteBlob unlinks a blob from a repository (DELETE answers 202), as the
// harness deletes manifests. The request is the harness's own, so
// Registry.Requests leaves it out.
func deleteBlob(t testing.TB, reg *harness.Registry, repo string, d digest.Digest) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, reg.URL()+"/v2/"+repo+"/blobs/"+d.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", harness.HarnessUserAgent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE blob %s: %v", d, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE blob %s: %s", d, resp.Status)
	}
}

// loadImage puts o in node's content store as a pull from registry/repo
// leaves it (gc.ref and distribution-source labels) and records it as the
// image name. The record is created first, so every blob is referenced
// from the moment its parent is written.
func loadImage(ctx context.Context, t testing.TB, node *harness.Containerd, name, registry, repo string, o *imagetest.Object) {
	t.Helper()
	cl := node.Client()
	ctx = namespaces.WithNamespace(ctx, node.Namespace())
	_, err := cl.ImageService().Create(ctx, images.Image{Name: name, Target: o.Root()})
	if err != nil && !errdefs.IsAlreadyExists(err) {
		t.Fatalf("image record %s: %v", name, err)
	}
	imagetest.WriteLocal(t, cl.ContentStore(), registry, repo, o)
}

// pidOf finds the process whose command line names config (a daemon's
// config file, unique to one harness daemon).
func pidOf(t testing.TB, config string) int {
	t.Helper()
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), config) {
			return pid
		}
	}
	t.Fatalf("no process runs with %s", config)
	return 0
}

// clockTick is the unit of /proc/pid/stat times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuTime returns the user + system time pid has used.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * clockTick
}

// resetPeakRSS resets the kernel's VmHWM of pid (write 5 to clear_refs).
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// procStatusKiB reads a "Vm...:  N kB" field of /proc/pid/status.
func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New(field + " not in /proc/" + strconv.Itoa(pid) + "/status")
}
