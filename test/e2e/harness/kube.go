package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Object is one Kubernetes object from a rendered manifest (helm template):
// its kind and metadata, and the whole of it for Decode into the typed views
// below, which hold only the fields regmend's tests read.
type Object struct {
	Kind     string
	Metadata ObjectMeta
	raw      map[string]any
}

// ObjectMeta is an object's metadata.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// ParseManifests splits a multi-document YAML manifest into objects.
func ParseManifests(manifest string) ([]Object, error) {
	dec := yaml.NewDecoder(strings.NewReader(manifest))
	var objs []Object
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifest YAML: %w", err)
		}
		if m == nil {
			continue
		}
		o := Object{raw: m}
		o.Kind, _ = m["kind"].(string)
		if err := decodeJSON(m["metadata"], &o.Metadata); err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
}

// Decode converts the object into a typed view (such as *DaemonSet) through
// JSON, the way the API server reads it.
func (o Object) Decode(into any) error { return decodeJSON(o.raw, into) }

func decodeJSON(v, into any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("decode %T: %w", into, err)
	}
	return nil
}

// Objects returns the objects of a kind.
func Objects(objs []Object, kind string) []Object {
	var out []Object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// DaemonSet is the typed view of an apps/v1 DaemonSet.
type DaemonSet struct {
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata ObjectMeta `json:"metadata"`
			Spec     PodSpec    `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// PodSpec is the typed view of a pod template's spec.
type PodSpec struct {
	HostNetwork       bool             `json:"hostNetwork"`
	DNSPolicy         string           `json:"dnsPolicy"`
	PriorityClassName string           `json:"priorityClassName"`
	Tolerations       []map[string]any `json:"tolerations"`
	InitContainers    []Container      `json:"initContainers"`
	Containers        []Container      `json:"containers"`
	Volumes           []Volume         `json:"volumes"`
}

// Volume returns the pod's volume of that name.
func (p PodSpec) Volume(name string) (Volume, bool) {
	for _, v := range p.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return Volume{}, false
}

// Container is the typed view of a container.
type Container struct {
	Name            string        `json:"name"`
	Image           string        `json:"image"`
	Command         []string      `json:"command"`
	Args            []string      `json:"args"`
	Env             []EnvVar      `json:"env"`
	VolumeMounts    []VolumeMount `json:"volumeMounts"`
	LivenessProbe   *Probe        `json:"livenessProbe"`
	ReadinessProbe  *Probe        `json:"readinessProbe"`
	Lifecycle       *Lifecycle    `json:"lifecycle"`
	SecurityContext *struct {
		ReadOnlyRootFilesystem bool `json:"readOnlyRootFilesystem"`
	} `json:"securityContext"`
	Resources struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
}

// EnvVar is a container's environment variable, literal or from the
// downward API.
type EnvVar struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `json:"fieldPath"`
		} `json:"fieldRef"`
	} `json:"valueFrom"`
}

// VolumeMount mounts a pod volume into a container.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly"`
	SubPath   string `json:"subPath"`
}

// Probe is an HTTP probe.
type Probe struct {
	HTTPGet *struct {
		Host string `json:"host"`
		Path string `json:"path"`
		Port int    `json:"port"`
	} `json:"httpGet"`
}

// Lifecycle holds a container's hooks.
type Lifecycle struct {
	PostStart *Handler `json:"postStart"`
	PreStop   *Handler `json:"preStop"`
}

// Handler is an exec hook.
type Handler struct {
	Exec *struct {
		Command []string `json:"command"`
	} `json:"exec"`
}

// Volume is a pod volume: a host path, an emptyDir, a Secret or a ConfigMap.
type Volume struct {
	Name     string `json:"name"`
	HostPath *struct {
		Path string `json:"path"`
		Type string `json:"type"`
	} `json:"hostPath"`
	EmptyDir *struct{} `json:"emptyDir"`
	Secret   *struct {
		SecretName string `json:"secretName"`
	} `json:"secret"`
	ConfigMap *struct {
		Name string `json:"name"`
	} `json:"configMap"`
}

// Service is the typed view of a v1 Service.
type Service struct {
	Spec struct {
		ClusterIP string            `json:"clusterIP"`
		Selector  map[string]string `json:"selector"`
		Ports     []struct {
			Name string `json:"name"`
			Port int    `json:"port"`
		} `json:"ports"`
	} `json:"spec"`
}

// Secret is the typed view of a v1 Secret.
type Secret struct {
	Type string            `json:"type"`
	Data map[string]string `json:"data"`
}
