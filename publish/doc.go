// Package publish pushes go-containerregistry images and indexes so that a
// re-push repairs what registry garbage collection took.
//
// remote.WriteIndex returns as soon as the index manifest is at the
// destination and never looks at its children, so pushing an index again
// cannot restore a per-arch child (or a layer of one) that GC deleted
// (issue 18). publish.WriteIndex and publish.Write have the shape of
// remote.WriteIndex and remote.Write, and options of the same names
// (WithAuth, WithAuthFromKeychain, WithTransport, WithContext,
// WithUserAgent, WithJobs); a publisher changes one line:
//
//	err := remote.WriteIndex(ref, ii, remote.WithAuthFromKeychain(authn.DefaultKeychain))
//	err := publish.WriteIndex(ref, ii, publish.WithAuthFromKeychain(authn.DefaultKeychain))
//
// It owns only the bridge: the image or index is exposed as the content
// store regmend's heal engine reads (every manifest, config and layer by
// digest; a layer streamed from Layer.Compressed when it is read, never
// held in memory whole), and the registry is reached through containerd's
// core/remotes/docker hosts and authorizer with the caller's transport and
// credentials (plain HTTP where go-containerregistry uses it: localhost,
// loopback, private addresses, name.Insecure). What to ask and push is the
// heal engine's (resolver/heal): each manifest is asked about (one HEAD
// each), and by default each config and layer too (WithDeepCheck); what
// the registry lacks is pushed leaves first (blobs, then child manifests,
// then the indexes over them); where it lost a manifest, the rest is read
// rather than trusted and what was written is read back. A re-push of an
// index the registry holds whole writes nothing.
//
// It moves the ref's tag, like remote.WriteIndex: a tag ref is pointed at
// the pushed index or image, wherever it pointed before, since that is what
// a publisher asks for. The tag is put once the whole closure is in the
// registry, so a root the registry lacked is untagged between its push by
// digest and the tag's; if the tag then cannot be put, the root gets
// regmend's retention tag before the error is returned. A digest ref binds no tag of the publisher's; a
// root the registry lacked then gets regmend's retention tag
// (heal.RetentionTag), so the next GC of untagged manifests does not take
// it at once.
//
// It never deletes anything (the manifest a moved tag named stays), never
// pushes a blob whose bytes do not match its digest (the push fails with an
// error errdefs.IsDataLoss recognises), never sends credentials to another
// host than ref's registry (and its token server), and never reads or
// writes containerd's content store: its only content is the image given.
package publish
