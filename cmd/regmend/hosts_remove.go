package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/internal/hostsfile"
	"github.com/regmend/regmend/internal/secret"
)

// runHostsRemove is `regmend hosts --remove REGISTRY...`, the uninstall
// path: regmend's entry out of each registry's hosts.toml (at the --mirror
// address if given, else wherever the entry is), then the mirror token file
// deleted unless --keep-mirror-token, so that no token stays on the node.
func runHostsRemove(ctx context.Context, cmd *cli.Command, registries []string) error {
	if cmd.IsSet("server-scheme") {
		return usageError("--remove takes no --server-scheme")
	}
	tokenPath := cmd.String("mirror-token-file")
	if cmd.Bool("keep-mirror-token") && tokenPath == "" {
		return usageError("--keep-mirror-token goes with --mirror-token-file")
	}
	dryRun := cmd.Bool("dry-run")
	var opts []hostsfile.Option
	if dryRun {
		opts = append(opts, hostsfile.WithDryRun())
	}
	// The token only helps take it out of backups; a file that cannot be
	// read does not stop the entries from coming out.
	var tok secret.File
	var tokErr error
	if tokenPath != "" {
		tok, tokErr = secret.ReadFile(ctx, tokenPath)
		if tokErr == nil {
			opts = append(opts, hostsfile.WithMirrorToken(daemon.MirrorTokenHeader, tok.Token.Reveal()))
		}
	}
	mirror := "" // regmend's entry wherever it is
	if cmd.IsSet("mirror") {
		mirror = cmd.String("mirror")
	}
	w := cmd.Root().Writer
	verb := map[hostsfile.Action]string{
		hostsfile.Removed:   "removed",
		hostsfile.Updated:   "removed regmend from",
		hostsfile.Unchanged: "no regmend entry in",
	}
	after := map[string][]byte{} // each file's content after --remove, for --dry-run
	for _, registry := range registries {
		res, err := hostsfile.Remove(ctx, cmd.String(flagHostsDir), registry, mirror, opts...)
		if errdefs.IsInvalidArgument(err) {
			return &exitCode{code: exitUsage, err: err}
		}
		if err != nil {
			return err // the token file stays: an entry may still hold it
		}
		printHostsResult(w, res, verb[res.Action], dryRun, tok)
		after[res.Path] = res.Content
	}
	switch {
	case tokenPath == "":
		return nil
	case cmd.Bool("keep-mirror-token"):
		fmt.Fprintf(w, "kept the mirror token file %s (--keep-mirror-token)\n", tokenPath)
		return nil
	case errdefs.IsNotFound(tokErr):
		fmt.Fprintf(w, "no mirror token file %s\n", tokenPath)
		return nil
	case tokErr != nil:
		return fmt.Errorf("mirror token file not deleted: %w", tokErr)
	}
	if !dryRun {
		after = nil // the files themselves say
	}
	return deleteTokenFile(ctx, w, cmd.String(flagHostsDir), tok, after)
}

// deleteTokenFile deletes the mirror token file tok, unless a hosts.toml
// under hostsDir still sends its token (another registry's entry that stays)
// or the file changed since it was read. It deletes only a regular file
// holding a token: a symlink points at a file managed elsewhere. With
// dryRun set, it only says what it would do, reading the hosts.toml files
// in it as their content after --remove.
func deleteTokenFile(ctx context.Context, w io.Writer, hostsDir string, tok secret.File, dryRun map[string][]byte) error {
	holders, err := hostsfile.TokenHolders(hostsDir, tok.Token.Reveal())
	if err != nil {
		return fmt.Errorf("mirror token file %s not deleted: %w", tok.Path, err)
	}
	holders = slices.DeleteFunc(holders, func(p string) bool {
		content, ok := dryRun[p]
		return ok && bytes.Equal(hostsfile.Redact(content, tok.Token.Reveal(), ""), content)
	})
	if len(holders) > 0 {
		fmt.Fprintf(w, "kept the mirror token file %s: %s still holds its token\n", tok.Path, holders[0])
		return nil
	}
	if st, err := os.Lstat(tok.Path); err != nil {
		return fmt.Errorf("mirror token file not deleted: %w", err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("mirror token file %s not deleted: not a regular file (%s): %w", tok.Path, st.Mode().Type(), errdefs.ErrFailedPrecondition)
	}
	now, err := secret.ReadFile(ctx, tok.Path)
	if err != nil {
		return fmt.Errorf("mirror token file not deleted: %w", err)
	}
	if !now.Token.Matches(tok.Token.Reveal()) {
		fmt.Fprintf(w, "kept the mirror token file %s: it changed meanwhile\n", tok.Path)
		return nil
	}
	if dryRun != nil {
		fmt.Fprintf(w, "would delete the mirror token file %s\n", tok.Path)
		return nil
	}
	if err := os.Remove(tok.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mirror token file not deleted: %w", err)
	}
	fmt.Fprintf(w, "deleted the mirror token file %s\n", tok.Path)
	return nil
}
