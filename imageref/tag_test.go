package imageref_test

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/regmend/regmend/imageref"
)

func TestValidateTag(t *testing.T) {
	for _, tag := range []string{"v1", "latest", "1.2.3-rc_1", "_x", strings.Repeat("a", 128)} {
		if err := imageref.ValidateTag(tag); err != nil {
			t.Errorf("ValidateTag(%q) = %v, want nil", tag, err)
		}
	}
	for _, tag := range []string{"", ".v1", "-v1", "a/b", "a:b", "sha256:abc", strings.Repeat("a", 129), "v1 "} {
		if err := imageref.ValidateTag(tag); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "tag") {
			t.Errorf("ValidateTag(%q) = %v, want invalid argument", tag, err)
		}
	}
}
