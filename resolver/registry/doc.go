// Package registry is regmend's client of the registries it heals: it asks
// a registry which descriptors it holds (HEAD), what a tag points at, and
// writes what the caller found missing without asking again: a blob as one
// POST (a cross-repository mount when the blob's source labels name another
// repository of the registry) and one monolithic PUT, a manifest as one
// PUT. Bytes stream through a digest check, so that a registry never
// receives unverified content whole.
//
// Hosts, TLS, headers and the scheme come from the node's hosts.toml, read
// with containerd's core/remotes/docker/config package, so regmend reaches a
// registry exactly as containerd does; regmend's own mirror address is
// excluded so it never calls itself. Credentials come from a docker-style
// config.json and never appear in errors or logs. Transient failures are
// retried with backoff (github.com/cenkalti/backoff/v5), honouring
// Retry-After, and a request that makes no progress is abandoned.
//
// It never deletes, never moves a tag (it only writes what a caller names),
// and never reads containerd's content store itself: callers pass the bytes
// to push. What to push, and in what order, is package heal's job.
package registry
