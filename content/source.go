package content

import (
	"net"
	"strings"
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
