package resolver

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/pkg/reference"

	"github.com/regmend/regmend/content"
)

// NamedTarget is a target with the local image names that point at it.
type NamedTarget struct {
	Target
	Names []string
}

// ImageTargets returns one target per (registry, repository, root) among the
// image records of registries. CRI records one image as repo:tag and
// repo@digest; both names are kept, in record order.
func ImageTargets(ctx context.Context, imgs content.ImageLister, registries []string) ([]NamedTarget, error) {
	records, err := imgs.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list local images: %w", err)
	}
	var (
		out   []NamedTarget
		index = map[string]int{}
	)
	for _, img := range records {
		spec, err := reference.Parse(img.Name)
		if err != nil { // image IDs (sha256:...) and other local names
			continue
		}
		host := spec.Hostname()
		repo := strings.TrimPrefix(spec.Locator, host+"/")
		if !slices.Contains(registries, host) || ValidateRepository(repo) != nil {
			continue
		}
		t := Target{Registry: host, Repository: repo, Root: img.Target}
		i, ok := index[t.String()]
		if !ok {
			i = len(out)
			index[t.String()] = i
			out = append(out, NamedTarget{Target: t})
		}
		out[i].Names = append(out[i].Names, img.Name)
	}
	return out, nil
}
