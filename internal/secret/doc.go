// Package secret owns regmend's shared secrets: the per-node mirror token
// that proves a request to the mirror comes from containerd (which reads it
// from hosts.toml), and the cluster token peers present to each other.
//
// It reads a token from a file, creates one when the file is absent, follows
// the file as it is rotated, compares a presented token in constant time, and
// wraps an http.Handler so that only requests carrying the token reach it
// (a request presenting none, or one no token could be, is refused without
// looking at the token file).
//
// A token is never logged, never put in an error, and never taken from the
// command line or the environment: a Token's String and Format print
// "[redacted]", and only Reveal gives the value, for writing it where it
// belongs (hosts.toml). The package never decides what a refusal looks like:
// the caller's deny handler does (the mirror answers 404, so that containerd
// treats it as any other miss; a peer endpoint answers 401).
package secret
