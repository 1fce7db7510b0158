// Package source is where a heal reads content from: a Source is a
// read-only content store (containerd's content.Provider and InfoProvider,
// which the heal engine reads through) that can also resolve a name or a
// digest to a root descriptor. Four kinds exist: an OCI image layout on disk
// (Layout), another registry read over regmend's own registry client
// (NewRegistry: hosts.toml, config.json auth, retries, stall timeout), the
// node's containerd content store (NewContainerd), and an ordered list of
// sources tried blob by blob (List). Open parses the CLI's --from value
// into one of them.
//
// It owns reading: opening a layout's index.json and blobs, a registry's
// HEADs and GETs (through package resolver/registry; one GET per blob read
// through, resumed with a Range where a body breaks off), and the choice of
// which source of a list answers for a blob. A registry source labels its
// blobs for a cross-repository mount only when the heal writes to that same
// registry (WithMountInto); which roots a node's own store may give a
// repository stays content.Local.Roots' rule.
//
// It never writes. A layout is only opened for reading (no ingest
// directory, no lock, no index.json rewrite, containerd's local store is
// never opened on it); a registry source sends only HEAD and GET; a
// containerd store is only read. It never trusts the bytes it serves: the
// heal engine checks every manifest it walks and every blob it pushes
// against its digest, so a corrupt or short blob in a source is reported,
// never pushed. It never holds a whole blob in memory.
package source
