package content

import (
	"fmt"
	"net"
	"slices"
	"strings"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
)

// SourceLabelPrefix is containerd's label recording which repositories a blob
// was pulled from: containerd.io/distribution.source.<host>=<repo>[,<repo>...].
const SourceLabelPrefix = "containerd.io/distribution.source."

// SourceHost is the host part containerd uses in source labels: the registry
// host without its port ("edge" for "edge:5000").
func SourceHost(registry string) string {
	if h, _, err := net.SplitHostPort(registry); err == nil {
		return h
	}
	return registry
}

// Sources returns the repositories of registry that labels say the blob came
// from, in label order.
func Sources(labels map[string]string, registry string) []string {
	v := labels[SourceLabelPrefix+SourceHost(registry)]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// FromRepository reports whether labels say the blob was pulled from repo of
// registry. It is the one rule by which regmend serves, and pushes, local
// content under a repository: the registry may refuse content from any other
// repository to whoever asks, so naming a digest under repo unlocks nothing.
func FromRepository(labels map[string]string, registry, repo string) bool {
	return slices.Contains(Sources(labels, registry), repo)
}

// CheckSource returns nil when info's labels say the blob came from repo of
// registry (FromRepository), otherwise an error wrapping errdefs.ErrNotFound
// that names the blob and the repository and says why.
func CheckSource(info ctrcontent.Info, registry, repo string) error {
	if FromRepository(info.Labels, registry, repo) {
		return nil
	}
	why := "containerd recorded no pull of it from " + registry
	if others := Sources(info.Labels, registry); len(others) > 0 {
		why = "containerd recorded it from " + strings.Join(others, ", ") + " only"
	}
	return fmt.Errorf("content %s did not come from %s/%s (%s): %w", info.Digest, registry, repo, why, errdefs.ErrNotFound)
}

// SourceAnnotations returns the source labels of labels as annotations, the
// form containerd's pusher reads to try a cross-repository mount.
func SourceAnnotations(labels map[string]string) map[string]string {
	var out map[string]string
	for k, v := range labels {
		if strings.HasPrefix(k, SourceLabelPrefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
