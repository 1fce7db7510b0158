// Command regmend heals an OCI registry from the content a Kubernetes node's
// containerd already holds: it serves reaped content to containerd as a
// fallback mirror, re-pushes it leaves first, and checks images before an
// upgrade. Flags follow ctr's conventions.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes: 0 healthy or healed, 1 error, 2 usage, 3 damage found or left.
const (
	exitError   = 1
	exitUsage   = 2
	exitDamaged = 3
)

// exitCode carries a non-error outcome's exit status (partial heal, damage).
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string { return e.err.Error() }
func (e *exitCode) Unwrap() error { return e.err }

func usageError(format string, a ...any) error {
	return &exitCode{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "regmend:", err)
		var ec *exitCode
		if errors.As(err, &ec) {
			os.Exit(ec.code)
		}
		os.Exit(exitError)
	}
}

func run(ctx context.Context, args []string) error {
	return app().Run(ctx, args)
}
