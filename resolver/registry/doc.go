// Package registry is regmend's client of the registries it heals: it asks
// a registry which descriptors it holds (HEAD), what a tag points at, and
// writes what the caller found missing without asking again: a blob as one
// POST (a cross-repository mount when the blob's source labels name another
// repository of the registry; a plain POST when the registry will not
// mount) and one monolithic PUT, a manifest as one PUT. Bytes stream
// through a digest check, so that a registry never receives unverified
// content whole; only content that ends early or hashes wrong is data
// loss, any other failed read keeps its cause.
//
// A HEAD is evidence, not truth: a registry's descriptor cache can answer
// 200 for a blob it deleted. Where the caller has evidence of loss, it
// confirms instead (ConfirmBlob: a ranged read of the first byte;
// ConfirmManifest: the manifest read back by digest).
//
// Hosts, TLS, headers and the scheme come from the node's hosts.toml, read
// with containerd's core/remotes/docker/config package, so regmend reaches a
// registry exactly as containerd does, or from a docker.RegistryHosts given
// in code (WithRegistryHosts); regmend's own mirror address is excluded so
// it never calls itself. A push host that is not the registry is told the
// registry in ?ns= on every request. Credentials come from a docker-style
// config.json, never appear in errors or logs, and are never sent to
// another host or over another scheme than the registry's (an upload
// Location, a redirect). Transient failures are retried with backoff
// (github.com/cenkalti/backoff/v5), honouring Retry-After; a registry that
// cannot be reached as configured (certificate refused, http spoken to an
// https client, host not found) fails at once, naming the fix; a request
// that makes too little progress is abandoned.
//
// It also reads a registry a heal takes content from (ReadSession: package
// source's registry source): HEADs that describe a digest or a tag (Stat,
// Resolve) and GETs that stream a blob from an offset or a manifest
// (OpenBlob, OpenManifest), asking a pull-only token scope, with the same
// hosts, credentials, retries and stall timeout; it leaves checking the
// bytes to the caller that pushes them.
//
// It never deletes, never moves a tag (it only writes what a caller names),
// and never reads containerd's content store itself: callers pass the bytes
// to push. What to push, and in what order, is package heal's job.
package registry
