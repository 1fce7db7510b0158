// Command imagebuild writes regmend's multi-platform OCI image as an image
// layout directory, and pushes such a directory to a registry. `make image`
// and `make image-push` run it; no container engine is involved.
//
//	imagebuild build -o bin/image -version V -revision R -source URL -created EPOCH \
//	    linux/amd64=bin/linux_amd64/regmend linux/arm64=bin/linux_arm64/regmend
//	imagebuild push [-insecure] bin/image registry/repo:tag
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regmend/regmend/internal/imagebuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: imagebuild build|push ...")
	}
	switch args[0] {
	case "build":
		return build(args[1:])
	case "push":
		return push(ctx, args[1:])
	}
	return fmt.Errorf("unknown command %q: want build or push", args[0])
}

func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("o", "bin/image", "image layout `dir` to write (replaced)")
	version := fs.String("version", "", "org.opencontainers.image.version, and the layout's ref name")
	revision := fs.String("revision", "", "org.opencontainers.image.revision (the commit)")
	source := fs.String("source", "", "org.opencontainers.image.source (the repository URL)")
	created := fs.String("created", "0", "creation time and file times, Unix `seconds` (SOURCE_DATE_EPOCH)")
	ca := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle `file` to include")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		return fmt.Errorf("-created %q: want Unix seconds", *created)
	}
	var bins []imagebuild.Binary
	for _, a := range fs.Args() {
		plat, path, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q: want OS/ARCH=PATH", a)
		}
		p, err := v1.ParsePlatform(plat)
		if err != nil {
			return err
		}
		bins = append(bins, imagebuild.Binary{Platform: *p, Path: path})
	}
	idx, err := imagebuild.Build(bins,
		imagebuild.WithCABundle(*ca), imagebuild.WithCreated(time.Unix(secs, 0)),
		imagebuild.WithVersion(*version), imagebuild.WithRevision(*revision), imagebuild.WithSource(*source))
	if err != nil {
		return err
	}
	if err := imagebuild.WriteLayout(*out, idx, *version); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: index %s (%d platforms)\n", *out, d, len(bins))
	return nil
}

func push(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	insecure := fs.Bool("insecure", false, "allow a plain-HTTP registry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: imagebuild push [-insecure] LAYOUT-DIR REGISTRY/REPO:TAG")
	}
	idx, err := imagebuild.ReadLayout(fs.Arg(0))
	if err != nil {
		return err
	}
	d, err := imagebuild.Push(ctx, idx, fs.Arg(1), *insecure)
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s@%s\n", fs.Arg(1), d)
	return nil
}
