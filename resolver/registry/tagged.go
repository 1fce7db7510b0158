package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociTagHeader is the header a registry that binds tags on a push by
// digest answers with, once per tag bound (distribution-spec 1.1).
const ociTagHeader = "OCI-Tag"

var anchoredTag = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)

// PutManifestTagged writes a manifest by digest and asks the registry to
// bind tag to it in the same request: PUT /v2/<repo>/manifests/<digest>?tag=<tag>
// (distribution-spec 1.1; zot since v2.1.16). So the manifest is never
// untagged there, and a GC running meanwhile cannot take it. It reports
// whether the tag is bound: a registry that binds it names it in an OCI-Tag
// header; one that ignores the query (distribution) stored the manifest by
// digest alone, and the caller binds the tag with PutManifest.
//
// It never moves a tag: it asks first where tag points, refuses a tag
// naming another digest (errdefs.ErrAlreadyExists, nothing written), and
// writes nothing when the tag already names desc (the manifest is there).
// The bytes are read and checked as PutManifest does. It tries once; wrap
// it in Retry.
func (s *Session) PutManifestTagged(ctx context.Context, desc ocispec.Descriptor, tag string, open func() (io.ReadCloser, error)) (bool, error) {
	if !anchoredTag.MatchString(tag) {
		return false, fmt.Errorf("tag %q for %s: not a tag: %w", tag, desc.Digest, errdefs.ErrInvalidArgument)
	}
	b, err := readManifest(desc, open)
	if err != nil {
		return false, err
	}
	at, ok, err := s.TagDigest(ctx, tag)
	switch {
	case err != nil:
		return false, err
	case ok && at == desc.Digest:
		return true, nil
	case ok:
		return false, fmt.Errorf("tag %s names %s, not %s: regmend never moves a tag: %w", s.Ref(":"+tag), at, desc.Digest, errdefs.ErrAlreadyExists)
	}
	ctx = s.scoped(ctx)
	u := s.endpoint("manifests", desc.Digest.String())
	q := u.Query()
	q.Set("tag", tag)
	u.RawQuery = q.Encode()
	body := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	resp, err := s.send(ctx, http.MethodPut, u, http.Header{"Content-Type": {desc.MediaType}}, body, desc.Size)
	if err != nil {
		return false, fmt.Errorf("put manifest %s to %s with tag %s: %w", desc.Digest, s.Ref("@"+desc.Digest.String()), tag, err)
	}
	bound := slices.Contains(resp.Header.Values(ociTagHeader), tag)
	if err := expect(resp, http.StatusCreated, http.StatusOK); err != nil {
		return false, fmt.Errorf("put manifest %s to %s with tag %s: %w", desc.Digest, s.Ref("@"+desc.Digest.String()), tag, err)
	}
	return bound, nil
}
