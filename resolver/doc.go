// Package resolver is regmend's registry side: it asks a registry which nodes
// of an image's closure it holds, re-pushes what is missing leaves first
// (blobs, then child manifests, then indexes) from the node's containerd
// content store, and binds a retention tag where an orphan needs one.
//
// Registry access follows the node's hosts.toml (containerd's
// core/remotes/docker/config), with credentials from a docker-style
// config.json; regmend's own mirror address is excluded so it never calls
// itself.
//
// It never deletes anything in a registry, never moves a tag, and never
// pushes bytes that do not match their digest. It only reads containerd's
// content store.
package resolver
