// Package sourcetest is the conformance suite every kind of source.Source
// passes (Run), and the fixtures it writes: a real multi-arch image written
// into an OCI image layout with go-containerregistry's layout writer,
// pushed to go-containerregistry's in-memory registry, or written into
// containerd's local content store (with containerd's metadata image
// store for names). Each opener can damage a blob in its source and list
// what changed in it, so the suite can tell that a source never writes and
// that a heal never pushes what a source holds damaged.
//
// It is for tests only. It never touches anything outside the test's
// temporary directories and loopback servers.
package sourcetest
