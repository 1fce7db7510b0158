package ctrconf

import "fmt"

// discardTables are the tables holding CRI's discard_unpacked_layers for a
// config version: version 3 (containerd 2.x) moved it to the images
// plugin; version 2 (1.6, 1.7, and read by 2.x) keeps it under the CRI
// plugin's containerd table.
func discardTables(version int) [][]string {
	switch {
	case version >= 3:
		return [][]string{{"plugins", "io.containerd.cri.v1.images"}}
	case version == 2:
		return [][]string{{"plugins", "io.containerd.grpc.v1.cri", "containerd"}}
	default:
		return [][]string{{"plugins", "cri", "containerd"}, {"plugins", "io.containerd.grpc.v1.cri", "containerd"}}
	}
}

// discard reports discard_unpacked_layers = true, as the last file that
// sets it leaves it.
func (o *options) discard(files []file) (Finding, bool) {
	var (
		on     bool
		set    file
		setAt  []string
		wasSet bool
	)
	for _, f := range files {
		for _, t := range discardTables(f.Version) {
			if v, ok := f.get(append(t, "discard_unpacked_layers")...); ok {
				b, _ := v.(bool)
				on, set, setAt, wasSet = b, f, t, true
			}
		}
	}
	if !wasSet || !on {
		return Finding{}, false
	}
	return Finding{
		Setting: "discard_unpacked_layers = true",
		File:    o.node(set.Path),
		Line:    set.line(append(setAt, "discard_unpacked_layers")...),
		Why: "containerd deletes each layer blob once it is unpacked, so this node keeps manifests and configs " +
			"but no layers: regmend can neither serve those layers to containerd nor re-push them to the registry, " +
			"and check reports such images as \"layers discarded after unpack\"",
		Fix: fmt.Sprintf("%s\n  discard_unpacked_layers = false\nthen restart containerd (layers already discarded "+
			"come back only when their images are pulled again)\n", tableHeader(setAt)),
	}, true
}
