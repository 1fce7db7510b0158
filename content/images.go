package content

import (
	"context"
	"fmt"
	"slices"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmend/regmend/imageref"
)

// Image is one image this node holds from a registry: a root descriptor in
// a repository, with the local image names that point at it.
type Image struct {
	Registry   string
	Repository string
	Root       ocispec.Descriptor
	Names      []string
}

// ImageTargets returns one Image per (registry, repository, root) among the
// image records of registries. CRI records one image as repo:tag and
// repo@digest; both names are kept, in record order. Records whose names
// are not registry references (image IDs, local names) are left out.
func ImageTargets(ctx context.Context, imgs ImageLister, registries []string) ([]Image, error) {
	records, err := imgs.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list local images: %w", err)
	}
	type key struct {
		registry, repo string
		root           string
	}
	var (
		out   []Image
		index = map[key]int{}
	)
	for _, img := range records {
		ref, err := imageref.Parse(img.Name)
		if err != nil || !slices.Contains(registries, ref.Registry) {
			continue
		}
		k := key{ref.Registry, ref.Repository, img.Target.Digest.String()}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, Image{Registry: ref.Registry, Repository: ref.Repository, Root: img.Target})
		}
		out[i].Names = append(out[i].Names, img.Name)
	}
	return out, nil
}
