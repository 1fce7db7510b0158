// Package bench measures regmend against the tools it replaces, with real
// components: `regmend heal` against `ctr images push` into an empty or
// damaged distribution registry, CRI pulls with and without regmend's
// fallback mirror, peak memory of a heal of a large layer, the cost of a
// preflight check, and a publisher's repair. It also holds Go benchmarks of
// the hot paths (closure walk, plan, mirror serve).
//
// The publisher scenario (publisher_test.go, -benchonly publisher) damages
// a distribution registry the same way before every run: one child manifest
// of a 2-platform index and that child's config and layers are deleted. It
// then repairs it from an intact copy of the index with `regmend heal
// --from oci:DIR` (an OCI layout), `regmend heal --from REG/REPO@DIGEST` (a
// second distribution registry), `regctl image copy --force-recursive`,
// `skopeo copy --all` and `crane copy`, counting both registries' requests
// and checking by GET whether the lost child and its blobs are served again.
// crane is there to show the failure the others fix: it finds the index
// present and copies nothing. regctl and crane are built from tools/go.mod
// by `make bench-tools`; skopeo comes from Debian (apt-get install skopeo).
//
// `make bench` runs TestBenchTable with -benchtable, which prints a table and
// writes it to RESULTS.md with a description of the machine. Without the
// flag the test is skipped at once, so `go test ./...` stays fast. The Go
// benchmarks run with `go test -bench . ./test/bench`; the table includes
// them too.
//
// Nothing here is imported by regmend; the package exists for its tests.
package bench
