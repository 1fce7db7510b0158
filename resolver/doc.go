// Package resolver is regmend's registry side, and HealingResolver, the
// containerd remotes.Resolver that heals on NotFound for Go programs that
// pull with the containerd client.
//
// Its subpackages each own one job, and import one way: heal uses registry;
// peers uses heal and mirror; only peers and the daemon import mirror:
//
//   - registry: the registry client. Presence (HEAD), tag lookup, and the
//     writes a plan found needed (blob upload or mount, manifest PUT)
//     without asking again, configured from the node's hosts.toml;
//     transport, retry, auth and the digest-verifying reader.
//   - heal: the heal engine. Target, Plan, Healer (leaves-first re-push),
//     retention tags, Check for many images, and the background Queue.
//   - mirror: the read-only distribution API served to containerd from the
//     local content store, handing what it serves to a heal queue.
//   - peers: cluster mode. Membership, the authenticated peer endpoint, the
//     verifying client that serves a local miss from a peer, and one healer
//     per root across the fleet.
//
// The local side (closures, parents, image records) is package content.
// Nothing here deletes anything in a registry, moves a tag, pushes bytes
// that do not match their digest, pushes or serves under a repository what
// the node did not pull from it, or writes to containerd's content store.
package resolver
