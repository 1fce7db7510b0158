// Package mirror serves the read-only part of the distribution API that
// containerd uses (GET and HEAD of manifests and blobs by digest) from the
// node's containerd content store, to the containerd that fell through to
// it after the registry answered 404.
//
// It owns the HTTP protocol: parsing and refusing requests, the rule that
// only content pulled from the requested repository is served, registry
// headers, Range, and 404 (never 5xx) for anything it cannot serve, and,
// exactly alike, for what its Denier (the operator's deny list) names. It
// sees the heal queue only through Enqueuer. It never writes to containerd's
// store, never serves a tag, and never talks to a registry.
package mirror
