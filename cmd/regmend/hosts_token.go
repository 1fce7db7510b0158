package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/hostsfile"
	"github.com/regmend/regmend/internal/secret"
)

// mirrorToken reads --mirror-token-file, creating it if absent (with
// --dry-run a missing file is not created: a throwaway token stands in).
// The token is read only from the file, never from the command line, so it
// never shows in ps. Without the flag it returns a zero File.
func mirrorToken(ctx context.Context, cmd *cli.Command) (secret.File, error) {
	path := cmd.String("mirror-token-file")
	if path == "" {
		return secret.File{}, nil
	}
	w := cmd.Root().Writer
	var f secret.File
	var err error
	if cmd.Bool("dry-run") {
		if f, err = secret.ReadFile(ctx, path); errdefs.IsNotFound(err) {
			fmt.Fprintf(w, "would create the mirror token file %s\n", path)
			f.Path = path
			f.Token, err = secret.Generate()
		}
	} else {
		f, err = secret.EnsureFile(ctx, path)
	}
	switch {
	case errdefs.IsInvalidArgument(err):
		return f, &exitCode{code: exitUsage, err: fmt.Errorf("--mirror-token-file: %w", err)}
	case err != nil:
		return f, fmt.Errorf("--mirror-token-file: %w", err)
	}
	if f.Created {
		fmt.Fprintf(w, "created the mirror token file %s (mode 0600)\n", f.Path)
	}
	if f.Exposed() {
		fmt.Fprintf(os.Stderr, "warning: the mirror token file %s is readable by group or others (mode %04o): whoever can read it can read through the mirror; chmod 600 it\n", f.Path, f.Mode)
	}
	return f, nil
}

// printHostsResult tells what hosts did. The token never reaches the
// output: in the file printed by --dry-run it reads <mirror token from FILE>,
// in whatever form the file holds it (TOML escapes a `"` or `\`).
func printHostsResult(w io.Writer, res hostsfile.Result, verb string, dryRun bool, tok secret.File) {
	if dryRun {
		verb = "would write"
		if res.Action == hostsfile.Removed {
			verb = "would remove"
		}
	}
	fmt.Fprintf(w, "%s %s\n", verb, res.Path)
	if res.Backup != "" {
		fmt.Fprintf(w, "previous file kept as %s\n", res.Backup)
	}
	if dryRun && res.Content != nil {
		content := res.Content
		if !tok.Token.IsZero() {
			content = hostsfile.Redact(content, tok.Token.Reveal(), "<mirror token from "+tok.Path+">")
		}
		w.Write(content)
	}
	if len(res.Hosts) > 0 {
		fmt.Fprintln(w, "containerd will try, in order:")
	}
	for _, h := range res.Hosts {
		fmt.Fprintf(w, "  %s\n", h)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// checkTokenFile refuses a bad mirror token file before serve contacts
// containerd (a missing one is fine: serve creates it).
func checkTokenFile(ctx context.Context, path string) error {
	if path == "" {
		return nil
	}
	if _, err := secret.ReadFile(ctx, path); err != nil && !errdefs.IsNotFound(err) {
		return &exitCode{code: exitUsage, err: fmt.Errorf("mirror token file: %w", err)}
	}
	return nil
}
