// Package bench measures regmend against the tools it replaces, with real
// components: `regmend heal` against `ctr images push` into an empty or
// damaged distribution registry, CRI pulls with and without regmend's
// fallback mirror, peak memory of a heal of a large layer, and the cost of a
// preflight check. It also holds Go benchmarks of the hot paths (closure
// walk, plan, mirror serve).
//
// `make bench` runs TestBenchTable with -benchtable, which prints a table and
// writes it to RESULTS.md with a description of the machine. Without the
// flag the test is skipped at once, so `go test ./...` stays fast. The Go
// benchmarks run with `go test -bench . ./test/bench`; the table includes
// them too.
//
// Nothing here is imported by regmend; the package exists for its tests.
package bench
