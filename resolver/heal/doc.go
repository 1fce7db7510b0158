// Package heal is regmend's heal engine. For a Target (a root descriptor in
// a registry's repository) it walks the root's closure in the local content
// store, asks the registry which nodes it holds (Plan), re-pushes what the
// registry lacks and this node holds, leaves first: blobs, then child
// manifests, then indexes (Healer.Heal), and binds a retention tag to an
// orphan so the next garbage collection keeps it; BindTag binds a tag the
// user names to a healed root (tag.go). Where the registry shows
// it lost content (a manifest of the closure missing) its HEAD is not
// taken on trust: the plan reads each blob's first byte and each held
// manifest, and the heal reads back what it wrote. Check classifies many
// images at once for `regmend check` and the daemon's sweep; Queue runs
// heals in the background for the mirror, bounded, coalesced and backed
// off from a failing registry.
//
// It reaches registries only through package registry and reads the node
// only through package content. It never deletes, never moves a tag (an
// existing retention tag pointing elsewhere is an error; BindTag moves a
// user's tag only when its caller says move, a user's flag), never pushes a
// blob whose bytes do not match its digest, and never writes to
// containerd's content store or image records.
package heal
