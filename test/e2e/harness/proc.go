package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long Proc.Stop waits after SIGTERM before sending SIGKILL.
const StopGrace = 5 * time.Second

// LogTailLines is how many lines of each server log are printed when a test
// fails.
const LogTailLines = 200

// ProcSpec describes a process for StartProc.
type ProcSpec struct {
	// Name labels the process in messages and log dumps (e.g. "registry").
	Name string
	// Path is the binary to run; Args are its arguments (without argv[0]).
	Path string
	Args []string
	// Dir is the working directory ("" for the test's).
	Dir string
	// Env is added to the test's environment.
	Env []string
	// LogPath receives stdout and stderr, appended, so a restarted server keeps
	// one log. Empty means a new file in t.TempDir().
	LogPath string
	// Listeners are handed to the process open, as file descriptors 3, 4,
	// ... in order (see Listener.Setting); StartProc closes the harness's
	// copies once the process has them.
	Listeners []*Listener
}

// Proc is a running child process started by StartProc. Its process group is
// signalled on Stop, and Stop runs automatically in t.Cleanup.
type Proc struct {
	name     string
	logPath  string
	logStart int64 // size of the log before this run
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stop     sync.Once
	expected atomic.Bool // an exit now is the harness's or the test's doing
}

// StartProc starts a process with stdout and stderr appended to a log file,
// registers that log with DumpLogOnFailure, and registers a cleanup that stops
// the process (SIGTERM, then SIGKILL after StopGrace) and waits for it.
//
// A process that exits before it is stopped (Stop, Signal) fails the test
// at once, with its exit status and the tail of its log: a server that died
// must never read as the failure of whatever the test did next. WaitFor on
// the process ends at once too.
func StartProc(t testing.TB, spec ProcSpec) *Proc {
	t.Helper()
	if spec.Name == "" {
		spec.Name = spec.Path
	}
	if spec.LogPath == "" {
		f, err := os.CreateTemp(t.TempDir(), sanitize(spec.Name)+"-*.log")
		if err != nil {
			t.Fatalf("create log for %s: %v", spec.Name, err)
		}
		spec.LogPath = f.Name()
		f.Close()
	}
	DumpLogOnFailure(t, spec.Name, spec.LogPath)
	logf, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open log for %s: %v", spec.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== harness: start %s %s at %s\n", spec.Path, strings.Join(spec.Args, " "), time.Now().Format(time.RFC3339Nano))
	logStart, _ := logf.Seek(0, io.SeekEnd)

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group so Stop reaches children; die with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	for _, l := range spec.Listeners {
		cmd.ExtraFiles = append(cmd.ExtraFiles, l.take(t))
	}
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles {
		f.Close() // the process holds its own copy
	}
	if err != nil {
		t.Fatalf("start %s: %v", spec.Name, err)
	}
	p := &Proc{name: spec.Name, logPath: spec.LogPath, logStart: logStart, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		// Reported before done closes: Stop, and so the test's cleanup,
		// waits for done, so t is still running here.
		if !p.expected.Load() {
			t.Errorf("%s (pid %d) exited before the harness stopped it: %v\n===== last %d lines of its log (%s) =====\n%s",
				p.name, cmd.Process.Pid, p.waitErr, deathTailLines, p.logPath, TailFile(p.logPath, deathTailLines))
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop %s: %v", p.name, err)
		}
	})
	return p
}

// Name returns the label given in ProcSpec.Name.
func (p *Proc) Name() string { return p.name }

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath returns the file receiving the process's stdout and stderr.
func (p *Proc) LogPath() string { return p.logPath }

// Log returns the whole log file (including earlier runs sharing it).
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitErr returns the result of waiting for the process; valid once Exited.
func (p *Proc) ExitErr() error {
	<-p.done
	return p.waitErr
}

// Signal sends sig to the process (not its group) and takes its exit, from
// now on, as the test's doing, as for a test that kills a server on
// purpose.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.expected.Store(true)
	return syscall.Kill(p.cmd.Process.Pid, sig)
}

// Stop sends SIGTERM to the process group, SIGKILL after StopGrace, and waits
// for the process to exit. It is idempotent. It returns an error only if the
// process had to be killed; the exit status of a terminated server is ignored.
func (p *Proc) Stop() error {
	var err error
	p.stop.Do(func() {
		p.expected.Store(true)
		if p.Exited() {
			return
		}
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(StopGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
			err = fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, StopGrace)
		}
	})
	return err
}

// deathTailLines is how much of a dead process's log its failure shows
// (the whole tail is printed with the other logs at the end).
const deathTailLines = 30

// LogSinceStart returns what the process wrote to its log in this run
// (a restarted server shares its log with earlier runs).
func (p *Proc) LogSinceStart() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(p.logStart, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// ErrExited is wrapped by WaitFor when the watched process exits early.
var ErrExited = errors.New("process exited")

// WaitFor calls ready every 50ms until it returns nil or timeout passes. If p is
// not nil and exits first, WaitFor gives up at once with ErrExited. The error
// includes the last error from ready.
func WaitFor(timeout time.Duration, p *Proc, what string, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("waiting for %s: %s %w (%v; log %s); last error: %v", what, p.name, ErrExited, p.waitErr, p.logPath, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not ready after %s: %v", what, timeout, err)
		}
		var died <-chan struct{}
		if p != nil {
			died = p.done
		}
		select {
		case <-died:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type namedLog struct{ name, path string }

var (
	logsMu sync.Mutex
	logs   = map[testing.TB][]namedLog{} // per test, in registration order
)

// DumpLogOnFailure arranges for the last LogTailLines lines of the file at path
// to be printed with t.Logf when the test has failed by the time its cleanups
// run. Registering the same path twice for one test prints it once. The
// cleanup is registered on the first call for t, so it runs after the cleanups
// (such as process stops) registered later.
func DumpLogOnFailure(t testing.TB, name, path string) {
	logsMu.Lock()
	defer logsMu.Unlock()
	list, ok := logs[t]
	if !ok {
		t.Cleanup(func() {
			logsMu.Lock()
			mine := logs[t]
			delete(logs, t)
			logsMu.Unlock()
			if !t.Failed() {
				return
			}
			for _, l := range mine {
				t.Logf("===== last %d lines of %s log (%s) =====\n%s", LogTailLines, l.name, l.path, TailFile(l.path, LogTailLines))
			}
		})
	}
	for _, l := range list {
		if l.path == path {
			return
		}
	}
	logs[t] = append(list, namedLog{name: name, path: path})
}

// TailFile returns the last n lines of the file at path, or a note saying why
// it cannot.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
