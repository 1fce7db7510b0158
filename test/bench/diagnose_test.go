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
	ctrcontent.Store
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

// diagnoseHeal heals root in-process from node's content store by both
// read paths regmend has: blobs read from containerd's content directory
// (content.Dir, found through containerd's introspection, as `regmend heal`
// and `regmend serve` read by default), and every blob read over
// containerd's gRPC API in 1 MiB blocks (--content-dir none, or a directory
// this process cannot read). It counts the reads that reach containerd's
// API; the difference in time is what the directory buys.
func diagnoseHeal(ctx context.Context, t *testing.T, rep *report, node *harness.Containerd, reg *harness.Registry, repo string, root ocispec.Descriptor, total int64, what string, runs int) {
	cl := node.Client()
	ctx = namespaces.WithNamespace(ctx, node.Namespace())
	remote, err := registry.NewRemote(registry.WithHostsDir(node.HostsDir()))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := content.ContentDir(ctx, cl.IntrospectionService())
	if err != nil {
		t.Fatal(err)
	}
	variants := []struct {
		name   string
		direct bool
	}{
		{"containerd's content directory (the default)", true},
		{"containerd's gRPC API, 1 MiB reads (`--content-dir none`)", false},
	}
	var rows [][]string
	var times []durations
	for _, v := range variants {
		var d, self, ctrd, regd durations
		var calls int64
		for i := range runs {
			emptyRegistry(t, reg)
			syscall.Sync()
			api := &readCounter{Store: cl.ContentStore()}
			var store content.Store = api
			if v.direct {
				if store, err = content.OpenDir(api, dir); err != nil {
					t.Fatal(err)
				}
			}
			healer, err := heal.NewHealer(store, remote)
			if err != nil {
				t.Fatal(err)
			}
			cpid, rpid := pidOf(t, node.ConfigPath()), pidOf(t, reg.ConfigPath())
			c0, r0, s0 := cpuTime(cpid), cpuTime(rpid), selfCPU()
			stop := startProfile(t, fmt.Sprintf("heal-%s-direct%v-%d.pprof", repo, v.direct, i))
			start := time.Now()
			_, err = healer.Heal(ctx, heal.Target{Registry: reg.Addr(), Repository: repo, Root: root})
			d = append(d, time.Since(start))
			stop()
			self, ctrd, regd = append(self, selfCPU()-s0), append(ctrd, cpuTime(cpid)-c0), append(regd, cpuTime(rpid)-r0)
			if err != nil {
				t.Fatalf("in-process heal: %v", err)
			}
			calls = api.calls.Load()
		}
		times = append(times, d)
		perCall := "—"
		if calls > 0 {
			perCall = size(total / calls)
		}
		rows = append(rows, []string{v.name, d.String(), fmt.Sprintf("%d", calls), perCall,
			secs(self.median()), secs(ctrd.median()), secs(regd.median())})
	}
	rep.add(section{
		title: "Diagnosis: the read path (" + what + ")",
		intro: "The same full heal, in-process (no process start), reading blobs from containerd's content directory or over its gRPC API. " +
			"Over gRPC each `ReadAt` is one `Read` stream, which containerd answers with a metadata lookup, an open of the blob file and protobuf framing; from the directory a read is a `pread` of the file. " +
			"Either way every byte is hashed before the registry may commit it.",
		header: []string{"read path", "heal time", "ReadAt calls to containerd's API", "bytes per call", "CPU: heal (test process)", "containerd", "registry"},
		rows:   rows,
		notes:  []string{fmt.Sprintf("Reading over the API instead of from the directory changes the heal time by %s.", ratio(times[1].median(), times[0].median()))},
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
