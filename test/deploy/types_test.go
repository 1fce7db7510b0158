package deploy

import (
	"testing"

	"github.com/regmend/regmend/test/e2e/harness"
)

// pod returns the DaemonSet and its pod spec.
func pod(t *testing.T, objs []harness.Object) (harness.DaemonSet, harness.PodSpec) {
	t.Helper()
	var ds harness.DaemonSet
	decode(t, one(t, objs, "DaemonSet"), &ds)
	return ds, ds.Spec.Template.Spec
}

// serveContainer returns the container running `regmend serve`.
func serveContainer(t *testing.T, p harness.PodSpec) harness.Container {
	t.Helper()
	if len(p.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(p.Containers))
	}
	return p.Containers[0]
}

// hostMount returns c's mount of the volume whose hostPath is path, and the
// volume, failing when there is none.
func hostMount(t *testing.T, p harness.PodSpec, c harness.Container, path string) (harness.VolumeMount, harness.Volume) {
	t.Helper()
	for _, v := range p.Volumes {
		if v.HostPath == nil || v.HostPath.Path != path {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				return m, v
			}
		}
	}
	t.Fatalf("container %s does not mount host path %s", c.Name, path)
	return harness.VolumeMount{}, harness.Volume{}
}

// secretAt returns the Secret mounted at mountPath in c ("" if none).
func secretAt(p harness.PodSpec, c harness.Container, mountPath string) string {
	for _, m := range c.VolumeMounts {
		if m.MountPath != mountPath {
			continue
		}
		for _, v := range p.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
	}
	return ""
}

// argValue returns the value after the first occurrence of name in args.
func argValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// argValues returns every value given to a repeatable flag.
func argValues(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if a == name && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}
