// Package deny owns regmend's deny list: what an operator deleted from a
// registry on purpose (a revoked image, a layer that leaked a secret) and
// regmend must therefore neither serve nor put back. To a registry a
// revocation and a garbage collection look alike (a 404); the deny list is
// how the operator tells them apart.
//
// It parses a deny file (one entry a line: a digest in any repository, a
// whole repository, or a digest in one repository; '#' starts a comment),
// refusing the whole file, with its name and line number, on any bad line;
// it follows the file as it changes, with no restart, polling its identity
// at most once a second, keeping the last good list when the file turns bad
// or disappears; and it counts refusals for Prometheus.
//
// It never decides what a refusal looks like (the mirror answers 404, the
// heal engine skips the node and says so), never writes the file, and never
// asks a registry: the list is only what the file says.
package deny
