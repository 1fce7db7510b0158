package main

import (
	"strings"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/heal"
)

// stateDiscarded is how check shows a broken image whose only loss is
// layers this node deleted after unpacking them: the registry lacks them and
// so does this node, while it holds the manifests that name them. That is
// what CRI's discard_unpacked_layers = true leaves, and no node with that
// setting can serve or re-push those layers; "broken" would send the reader
// looking for damage elsewhere.
const stateDiscarded = "layers discarded after unpack (discard_unpacked_layers)"

// layersDiscarded reports whether a broken image is broken only by layers
// gone from this node's store (heal.Plan names them unhealable, absent
// locally, under a manifest held here).
func layersDiscarded(img heal.ImageReport) bool {
	if img.State != heal.StateBroken {
		return false
	}
	nodes := img.Unhealable
	if img.Fix != nil {
		nodes = img.Fix.Left
	}
	layers := 0
	for _, n := range nodes {
		switch {
		case n.Kind == content.KindLayer.String() && !n.Local:
			layers++
		case n.Local && (n.Kind == content.KindManifest.String() || n.Kind == content.KindIndex.String()) && namesOneOf(n.Reason, nodes):
			// Held here, unhealable only because a child is: the plan's
			// reason names that child.
		default:
			return false // absent for another reason, unreadable, or not pushed
		}
	}
	return layers > 0
}

// namesOneOf reports whether reason names the digest of another of nodes.
func namesOneOf(reason string, nodes []heal.NodeResult) bool {
	for _, n := range nodes {
		if n.Digest != "" && strings.Contains(reason, n.Digest.String()) {
			return true
		}
	}
	return false
}

// checkOutput is a CheckReport as check prints it in JSON: the report as
// the heal package makes it, and each image whose layers were discarded.
type checkOutput struct {
	*heal.CheckReport
	// LayersDiscarded are the images (registry/repo@digest) broken only by
	// layers discarded after unpack; their state stays "broken".
	LayersDiscarded []string `json:"layersDiscarded,omitempty"`
}

// newCheckOutput names the images whose layers were discarded when the
// report is of this node's store (node), as only it has CRI's setting.
func newCheckOutput(rep *heal.CheckReport, node bool) checkOutput {
	out := checkOutput{CheckReport: rep}
	for _, img := range rep.Images {
		if node && layersDiscarded(img) {
			out.LayersDiscarded = append(out.LayersDiscarded, img.Image)
		}
	}
	return out
}
