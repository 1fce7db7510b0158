package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	units "github.com/docker/go-units"
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/content"
	"github.com/regmend/regmend/resolver/heal"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show an image's closure with local and registry presence",
		ArgsUsage: "REGISTRY/REPO@DIGEST | REGISTRY/REPO:TAG",
		Description: `Every node of the image (index, manifests, configs, layers) with its media
type, platform, size, whether this node's containerd holds it and whether the
registry does. Asks the registry for every node, blobs included; writes nothing.`,
		Flags:  []cli.Flag{outputFlag()},
		Action: runInspect,
	}
}

// treeNode is one node of the inspect tree.
type treeNode struct {
	heal.NodeResult
	Children []*treeNode `json:"children,omitempty"`
}

func runInspect(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() != 1 {
		return usageError("inspect takes one image reference, got %d", cmd.NArg())
	}
	ref, err := parseRef(cmd.Args().First())
	if err != nil {
		return err
	}
	n, ctx, err := connect(ctx, cmd)
	if err != nil {
		return err
	}
	defer n.Close()
	rem, err := remote(cmd)
	if err != nil {
		return err
	}
	healer, err := heal.NewHealer(n.store(), rem, heal.WithDeepCheck(true))
	if err != nil {
		return err
	}
	targets, err := n.targets(ctx, ref)
	if err != nil {
		return err
	}
	var trees []*treeNode
	for _, t := range targets {
		plan, err := healer.Plan(ctx, t)
		if err != nil {
			return err
		}
		trees = append(trees, tree(plan))
	}
	w := cmd.Root().Writer
	if cmd.String(flagOutput) == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(trees)
	}
	for i, t := range trees {
		fmt.Fprintf(w, "%s\n", targets[i])
		printTree(w, t, "", "")
	}
	return nil
}

func tree(plan *heal.Plan) *treeNode {
	byDigest := map[string]heal.NodeResult{}
	for _, n := range plan.Nodes() {
		byDigest[n.Digest.String()] = n
	}
	var build func(n *content.Node) *treeNode
	build = func(n *content.Node) *treeNode {
		t := &treeNode{NodeResult: byDigest[n.Digest.String()]}
		t.Platform = n.Platform
		for _, c := range n.Children {
			t.Children = append(t.Children, build(c))
		}
		return t
	}
	return build(plan.Closure.Root)
}

func printTree(w io.Writer, t *treeNode, first, rest string) {
	line := fmt.Sprintf("%s%s %s %s", first, t.Kind, t.Digest, units.HumanSize(float64(t.Size)))
	if t.Platform != nil {
		line += " " + platform(t.Platform)
	}
	line += fmt.Sprintf("  local:%s registry:%s", yesNo(t.Local), t.Status)
	if t.Reason != "" {
		line += " (" + t.Reason + ")"
	}
	fmt.Fprintln(w, line)
	for i, c := range t.Children {
		if i == len(t.Children)-1 {
			printTree(w, c, rest+"└── ", rest+"    ")
		} else {
			printTree(w, c, rest+"├── ", rest+"│   ")
		}
	}
}
