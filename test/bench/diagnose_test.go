package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/registry"
	"github.com/regmend/regmend/test/e2e/harness"
)

var benchProfile = flag.String("benchprofile", "", "write CPU profiles of the in-process heals to this `dir`")

// readCounter wraps a content store, counting the ReadAt calls that reach
// it. With block > 0 every call reads a whole block and later calls are
// served from it: what reading through a block-sized buffer would send.
type readCounter struct {
	content.Store
	block        int
	calls, bytes atomic.Int64
}

func (s *readCounter) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ctrcontent.ReaderAt, error) {
	ra, err := s.Store.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	return &countedReaderAt{ReaderAt: ra, s: s}, nil
}

type countedReaderAt struct {
	ctrcontent.ReaderAt
	s      *readCounter
	buf    []byte
	bufOff int64
	bufN   int
}

func (r *countedReaderAt) read(p []byte, off int64) (int, error) {
	r.s.calls.Add(1)
	n, err := r.ReaderAt.ReadAt(p, off)
	r.s.bytes.Add(int64(n))
	return n, err
}

func (r *countedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if r.s.block == 0 {
		return r.read(p, off)
	}
	n := 0
	for len(p) > 0 {
		if off >= r.bufOff && off < r.bufOff+int64(r.bufN) {
			c := copy(p, r.buf[off-r.bufOff:r.bufN])
			n, p, off = n+c, p[c:], off+int64(c)
			continue
		}
		if off >= r.Size() {
			return n, io.EOF
		}
		if r.buf == nil {
			r.buf = make([]byte, r.s.block)
		}
		m, err := r.read(r.buf[:min(int64(r.s.block), r.Size()-off)], off)
		r.bufOff, r.bufN = off, m
		if m == 0 {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// diagnoseHeal heals root in-process through node's gRPC content store,
// as `regmend heal` does, counting the reads that reach containerd; then
// again with every read widened to 1 MiB, the size containerd's own
// content.Copy reads with. The difference is what the read size costs.
func diagnoseHeal(ctx context.Context, t *testing.T, rep *report, node *harness.Containerd, reg *harness.Registry, repo string, root ocispec.Descriptor, total int64, what string, runs int) {
	cl := node.Client()
	ctx = namespaces.WithNamespace(ctx, node.Namespace())
	remote, err := registry.NewRemote(registry.WithHostsDir(node.HostsDir()))
	if err != nil {
		t.Fatal(err)
	}
	variants := []struct {
		name  string
		block int
	}{
		{"as `regmend heal` reads (io.Copy's 32 KiB)", 0},
		{"reads widened to 1 MiB (simulated fix)", 1 << 20},
	}
	var rows [][]string
	var times []durations
	for _, v := range variants {
		var d, self, ctrd, regd durations
		var calls int64
		for i := range runs {
			emptyRegistry(t, reg)
			syscall.Sync()
			store := &readCounter{Store: cl.ContentStore(), block: v.block}
			healer, err := heal.NewHealer(store, remote)
			if err != nil {
				t.Fatal(err)
			}
			cpid, rpid := pidOf(t, node.ConfigPath()), pidOf(t, reg.ConfigPath())
			c0, r0, s0 := cpuTime(cpid), cpuTime(rpid), selfCPU()
			stop := startProfile(t, fmt.Sprintf("heal-%s-block%d-%d.pprof", repo, v.block, i))
			start := time.Now()
			_, err = healer.Heal(ctx, heal.Target{Registry: reg.Addr(), Repository: repo, Root: root})
			d = append(d, time.Since(start))
			stop()
			self, ctrd, regd = append(self, selfCPU()-s0), append(ctrd, cpuTime(cpid)-c0), append(regd, cpuTime(rpid)-r0)
			if err != nil {
				t.Fatalf("in-process heal: %v", err)
			}
			calls = store.calls.Load()
		}
		times = append(times, d)
		rows = append(rows, []string{v.name, d.String(), fmt.Sprintf("%d", calls), size(total / max(calls, 1)),
			secs(self.median()), secs(ctrd.median()), secs(regd.median())})
	}
	rep.add(section{
		title: "Diagnosis: where a heal's time goes (" + what + ")",
		intro: "The same full heal, in-process (no process start), through containerd's gRPC content store as `regmend heal` uses it. " +
			"Each `ReadAt` on that store is one gRPC `Read` stream, and containerd answers each with a metadata lookup and an open of the blob file.",
		header: []string{"read path", "heal time", "ReadAt calls to containerd", "bytes per call", "CPU: heal (test process)", "containerd", "registry"},
		rows:   rows,
		notes:  []string{fmt.Sprintf("Widening the reads changes the heal time by %s (fixed / as is).", ratio(times[1].median(), times[0].median()))},
	})
}

// selfCPU is the user + system time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startProfile starts a CPU profile into -benchprofile/name, if asked.
func startProfile(t *testing.T, name string) (stop func()) {
	if *benchProfile == "" {
		return func() {}
	}
	if err := os.MkdirAll(*benchProfile, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(*benchProfile, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
