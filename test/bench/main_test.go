package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rusageEnv makes the test binary a wrapper that runs its arguments as a
// command and reports the command's peak RSS; see executeRSS.
const rusageEnv = "REGMEND_BENCH_RUSAGE_WRAPPER"

func TestMain(m *testing.M) {
	if os.Getenv(rusageEnv) != "" {
		os.Exit(rusageWrapper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// rusageWrapper runs args and writes "maxrssKiB wallNs floorKiB" to fd 3.
//
// Go starts a process with vfork: until its exec, the child shares the
// parent's address space, and Linux carries that space's high-water RSS
// into the child's ru_maxrss. Exec'd straight from the test process (which
// holds the random image data), every child would report at least the
// test's own peak. Exec'd from this wrapper, a fresh small process, the
// floor is the wrapper's own peak (floorKiB), reported so a reader can
// tell a real figure from the floor.
func rusageWrapper(args []string) int {
	report := os.NewFile(3, "rusage")
	if len(args) == 0 || report == nil {
		fmt.Fprintln(os.Stderr, "rusage wrapper: no command or no report fd")
		return 125
	}
	floor, _ := procStatusKiB(os.Getpid(), "VmHWM")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, rusageEnv+"=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "rusage wrapper:", err)
		return 125
	}
	var maxRSS int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss
	}
	fmt.Fprintf(report, "%d %d %d\n", maxRSS, took.Nanoseconds(), floor)
	report.Close()
	return code
}
