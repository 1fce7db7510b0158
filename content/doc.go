// Package content is regmend's local side: what a node's containerd content
// store holds for an image.
//
// It builds the closure of a root descriptor (index → manifests → config and
// layers) with each node's media type, size, platform and local presence; finds
// which repositories a blob was pulled from and which indexes and image records
// reference a digest, so a digest can be re-resolved through its parent (a
// root is only ever content the node pulled from the repository named:
// FromRepository, the one rule the mirror, heals and HealingResolver share); lists
// the images a node holds from given registries; and streams blobs: from
// containerd's content directory where this process can read it (Dir, the
// directory found through containerd's introspection), otherwise over
// containerd's API in the large reads that keep gRPC from dominating a heal.
//
// It only reads. It never writes to containerd's content store, its content
// directory or its image records; it never reads a blob file containerd does not
// list in the namespace; and it never talks to a registry (that is package
// resolver/registry).
package content
