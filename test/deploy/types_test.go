package deploy

import "testing"

// Typed views of the rendered objects: only the fields the tests read.

type daemonSet struct {
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata meta    `json:"metadata"`
			Spec     podSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type podSpec struct {
	HostNetwork       bool             `json:"hostNetwork"`
	DNSPolicy         string           `json:"dnsPolicy"`
	PriorityClassName string           `json:"priorityClassName"`
	Tolerations       []map[string]any `json:"tolerations"`
	InitContainers    []container      `json:"initContainers"`
	Containers        []container      `json:"containers"`
	Volumes           []volume         `json:"volumes"`
}

type container struct {
	Name         string        `json:"name"`
	Image        string        `json:"image"`
	Command      []string      `json:"command"`
	Args         []string      `json:"args"`
	Env          []envVar      `json:"env"`
	VolumeMounts []volumeMount `json:"volumeMounts"`
	Liveness     *probe        `json:"livenessProbe"`
	Readiness    *probe        `json:"readinessProbe"`
	Lifecycle    *struct {
		PostStart *handler `json:"postStart"`
		PreStop   *handler `json:"preStop"`
	} `json:"lifecycle"`
	Resources struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
}

type envVar struct {
	Name      string `json:"name"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `json:"fieldPath"`
		} `json:"fieldRef"`
	} `json:"valueFrom"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly"`
}

type probe struct {
	HTTPGet *struct {
		Host string `json:"host"`
		Path string `json:"path"`
		Port int    `json:"port"`
	} `json:"httpGet"`
}

type handler struct {
	Exec *struct {
		Command []string `json:"command"`
	} `json:"exec"`
}

type volume struct {
	Name     string `json:"name"`
	HostPath *struct {
		Path string `json:"path"`
		Type string `json:"type"`
	} `json:"hostPath"`
	Secret *struct {
		SecretName string `json:"secretName"`
	} `json:"secret"`
}

type service struct {
	Spec struct {
		ClusterIP string            `json:"clusterIP"`
		Selector  map[string]string `json:"selector"`
		Ports     []struct {
			Name string `json:"name"`
			Port int    `json:"port"`
		} `json:"ports"`
	} `json:"spec"`
}

type secret struct {
	Type string            `json:"type"`
	Data map[string]string `json:"data"`
}

// pod returns the DaemonSet's pod spec and the object's typed view.
func pod(t *testing.T, objs []object) (daemonSet, podSpec) {
	t.Helper()
	var ds daemonSet
	decode(t, one(t, objs, "DaemonSet").raw, &ds)
	return ds, ds.Spec.Template.Spec
}

// serveContainer returns the container running `regmend serve`.
func (p podSpec) serveContainer(t *testing.T) container {
	t.Helper()
	if len(p.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(p.Containers))
	}
	return p.Containers[0]
}

// mount returns the mount of the volume whose hostPath is path, and the
// volume, failing when there is none.
func (p podSpec) hostMount(t *testing.T, c container, path string) (volumeMount, volume) {
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
	return volumeMount{}, volume{}
}

// secretVolume returns the secret volume mounted at mountPath in c ("" if none).
func (p podSpec) secretAt(c container, mountPath string) string {
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
