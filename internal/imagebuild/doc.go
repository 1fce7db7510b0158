// Package imagebuild assembles regmend's container image without a container
// engine: one static regmend binary per platform, plus the CA bundle, become a
// multi-platform OCI image index, written as an OCI image layout directory or
// pushed to a registry with go-containerregistry.
//
// The image holds exactly two files: /usr/bin/regmend (the entrypoint) and
// /etc/ssl/certs/ca-certificates.crt, where Go's crypto/x509 looks first on
// Linux, for registries behind a public CA. Every timestamp in it is the one
// given with WithCreated, so the same binaries and bundle always give the same
// digests.
//
// It owns only the packaging. Building the binaries (CGO_ENABLED=0, one
// GOOS/GOARCH each) is the Makefile's job; imagebuild never runs a compiler.
package imagebuild
