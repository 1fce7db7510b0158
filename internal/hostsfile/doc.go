// Package hostsfile owns regmend's edits to containerd's registry host
// configuration: the file <hosts-dir>/<registry>/hosts.toml that containerd
// reads when it resolves and fetches images from <registry>.
//
// containerd tries the [host."…"] entries of that file in file order and the
// top-level server last. regmend is a fallback mirror: it must be asked only
// after the registry itself answered 404. [Ensure] therefore makes regmend's
// entry the last [host] entry, with capabilities pull and resolve, and makes
// sure the registry's own endpoint is an explicit [host] entry ahead of it
// (otherwise containerd would reach the registry only through server, after
// regmend). Everything else in the file is kept as the user wrote it: the
// file is edited as text, never re-encoded, so comments and formatting
// survive.
//
// With [WithMirrorToken], regmend's entry also carries a per-host header
// holding the node's mirror token, which containerd sends to the mirror and
// nobody else has; a file holding it is kept at mode 0600. [Remove] undoes
// Ensure: it finds regmend's entry by the comment Ensure marks it with,
// whatever the mirror's address, takes it out, and gives back the user's
// text byte for byte, with the mode it had before the token.
//
// Ensure never writes a file containerd cannot use: every candidate is loaded
// with containerd's own config package (core/remotes/docker/config) and the
// resulting host order is checked before anything is written. Files are
// replaced atomically. A backup (hosts.toml.bak.<time>) is kept only of what
// the user wrote, once, and never holds the token: see backups.go. The
// package deletes no backup and no file of the user's; [Redact] hides the
// token in anything shown.
//
// [CheckCRIConfigPath] checks the other half of the setup: that containerd's
// CRI plugin reads hosts.toml files at all, i.e. that its registry
// config_path names exactly one directory, the one regmend writes to.
package hostsfile
