// Package peers makes the regmend processes of a cluster act as one: it
// owns membership (a static list of peer URLs, or every address of a DNS
// name, re-resolved), the client that asks peers for content by digest and
// verifies every byte they send, the mirror's fallback to that client when
// the local store misses, the authenticated peer endpoint that serves this
// node's store to peers, and the ranking that picks one healer per root
// among the live holders.
//
// What it guarantees about a peer's bytes: a response that does not hash to
// its digest never completes. The bytes are streamed on to containerd as
// they arrive, except the final ones, which are held back until the whole
// blob has hashed; on a mismatch the response is cut short, so containerd's
// own digest check refuses it and nothing unverified is committed. A
// manifest is read whole and verified before a byte of it is served.
//
// It never writes to containerd's store, never fetches from a peer what its
// Denier (the operator's deny list) names, never asks a peer on behalf of a
// peer (the peer endpoint serves the local store only), and never waits on a
// peer without a deadline. With no peer reachable it changes nothing: the
// mirror answers 404 and the node heals as a single node does.
package peers
