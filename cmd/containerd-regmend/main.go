// Command containerd-regmend is containerd with regmend compiled in as a
// built-in plugin: containerd's own main and builtins (as in containerd's
// cmd/containerd/main.go, including CRI) plus github.com/regmend/regmend/plugin.
// It takes containerd's flags and config.toml; regmend runs once the
// [plugins."io.containerd.server.v1.regmend"] section names registries.
//
// containerd's command handles signals itself (SIGTERM stops the server and
// closes every plugin), so main does not install its own handler.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"

	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"

	_ "github.com/regmend/regmend/plugin"
)

func main() {
	ctx := context.Background()
	if err := command.App().Run(ctx, os.Args); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "containerd:", err)
		os.Exit(1)
	}
}
