// Package demo is `make demo`: the failure regmend fixes, reproduced with a
// throwaway containerd and registry on loopback, then healed, narrated step
// by step. It also runs in `make test`, so the demo cannot silently rot.
package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/test/e2e/harness"
)

func say(format string, a ...any) { fmt.Printf("    "+format+"\n", a...) }

func step(format string, a ...any) { fmt.Printf("\n==> "+format+"\n", a...) }

func TestDemo(t *testing.T) {
	harness.RequireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := harness.ProductBinary(t, "regmend")
	other := "linux/arm64"
	if harness.HostPlatform == other {
		other = "linux/amd64"
	}

	step("Start a throwaway distribution registry and a containerd node (CRI enabled), both on loopback")
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	node := harness.StartContainerd(t, harness.ContainerdOptions{Name: "node"})
	node.UseRegistry(reg)
	say("registry   %s", reg.URL())
	say("containerd %s (namespace %s)", node.Socket(), node.Namespace())

	step("Push %s as a single-arch image and pull it on the node with crictl (the kubelet's path)", reg.Ref("app:v1"))
	img := harness.PushImage(ctx, t, reg.Ref("app:v1"), harness.ImageSpec{Layers: 2, LayerSize: 256 << 10})
	pull(ctx, t, node, reg.Ref("app:v1"))
	d1 := img.Digest
	say("the node now holds D1 = %s", d1)

	step("A sync overwrites the tag app:v1 with a multi-arch index")
	idx := harness.PushIndex(ctx, t, reg.Ref("app:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, other}})
	say("app:v1 -> %s (index)", idx.Digest)

	step("The registry's garbage-collect --delete-untagged reaps D1, now untagged")
	reg.GarbageCollect()
	say("HEAD /v2/app/manifests/D1 -> exists=%v", reg.ManifestExists("app", d1))

	step("The next upgrade pulls %s: containerd asks the registry, gets 404, and fails", short(reg.Ref("app@"+d1.String())))
	if out, err := node.Pull(ctx, reg.Ref("app@"+d1.String())); err == nil {
		t.Fatalf("the pull of the reaped digest succeeded; the failure did not reproduce: %s", out)
	} else {
		msg := lastLine(err.Error())
		if i := strings.Index(msg, "desc = "); i >= 0 {
			msg = strings.TrimSuffix(msg[i+len("desc = "):], `"`)
		}
		say("crictl pull: %s", short(msg))
	}
	say("...although the node's content store still holds D1: %v", node.HasContent(ctx, d1))

	step("Install regmend: `regmend serve` runs the mirror, `regmend hosts` lists it after the registry with the node's mirror token")
	tokenFile := filepath.Join(t.TempDir(), "mirror-token")
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	srv := harness.StartProc(t, harness.ProcSpec{Name: "regmend-serve", Path: bin, Args: []string{
		"-a", node.Socket(), "--hosts-dir", node.HostsDir(), "serve",
		"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--registry", reg.Addr(), "--sweep-interval", "0", "--mirror-token-file", tokenFile,
	}})
	addrs := harness.ReadAddrFile(t, srv, addrFile, 10*time.Second)
	mirror := addrs.Mirror
	if err := harness.WaitFor(10*time.Second, srv, "regmend", func() error {
		resp, err := http.Get("http://" + addrs.Metrics + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	out := run(ctx, t, bin, node, "hosts", reg.Addr(), "--mirror", "http://"+mirror, "--mirror-token-file", tokenFile, "--containerd-config", node.ConfigPath())
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		say("%s", l)
	}
	say("regmend serving on %s", mirror)

	step("The same pull again: the registry says 404, containerd falls back to regmend, which serves D1 from the node")
	start := time.Now()
	pull(ctx, t, node, reg.Ref("app@"+d1.String()))
	say("succeeded in %s", time.Since(start).Round(time.Millisecond))
	status := fetchWithoutToken(t, "http://"+mirror+"/v2/app/manifests/"+d1.String()+"?ns="+reg.Addr())
	say("while a local process without the token gets: GET /v2/app/manifests/D1 -> %d, no content", status)
	if status != http.StatusNotFound {
		t.Fatalf("the mirror answered %d to a request without the token", status)
	}

	step("In the background regmend re-pushed D1 leaves first (layers, config, manifest) and bound a retention tag")
	tag := "sha256-" + d1.Encoded() + ".regmend"
	deadline := time.Now().Add(30 * time.Second)
	got, _ := reg.TagDigest("app", tag)
	for got != d1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		got, _ = reg.TagDigest("app", tag)
	}
	say("HEAD /v2/app/manifests/D1 -> exists=%v", reg.ManifestExists("app", d1))
	say("tag %s -> D1: %v", short(tag), got == d1)
	v1, _ := reg.TagDigest("app", "v1")
	say("app:v1 untouched (still the index): %v", v1 == idx.Digest)

	step("A fresh node, with no regmend, pulls D1 from the registry")
	fresh := harness.StartContainerd(t, harness.ContainerdOptions{Name: "fresh"})
	fresh.UseRegistry(reg)
	pull(ctx, t, fresh, reg.Ref("app@"+d1.String()))

	step("The next garbage collection keeps D1: the retention tag holds it")
	reg.GarbageCollect()
	say("HEAD /v2/app/manifests/D1 -> exists=%v", reg.ManifestExists("app", d1))
	if !reg.ManifestExists("app", d1) || got != d1 || v1 != idx.Digest {
		t.Fatal("the demo did not end healed")
	}

	step("Preflight for the next upgrade: `regmend check` finds nothing left to heal")
	for _, l := range strings.Split(strings.TrimSpace(run(ctx, t, bin, node, "check", "--registry", reg.Addr())), "\n") {
		say("%s", l)
	}
	step("Done: the throwaway containerd, registry and regmend are stopped and their files removed")
}

// fetchWithoutToken is any local process's request to the mirror: it
// carries no X-Regmend-Token header.
func fetchWithoutToken(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); len(b) > 200 {
		t.Fatalf("the refusal carries %d bytes", len(b))
	}
	return resp.StatusCode
}

func pull(ctx context.Context, t *testing.T, node *harness.Containerd, ref string) {
	t.Helper()
	out, err := node.Pull(ctx, ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	say("crictl pull %s: %s", short(ref), strings.TrimSpace(out))
}

func run(ctx context.Context, t *testing.T, bin string, node *harness.Containerd, args ...string) string {
	t.Helper()
	full := append([]string{"-a", node.Socket(), "--hosts-dir", node.HostsDir()}, args...)
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("regmend %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// short abbreviates digests in s for reading.
func short(s string) string {
	for _, p := range []string{"sha256:", "sha256-"} {
		if i := strings.Index(s, p); i >= 0 && len(s) >= i+len(p)+12 {
			end := i + len(p) + 64
			if end > len(s) {
				end = len(s)
			}
			s = s[:i+len(p)+12] + "…" + s[end:]
		}
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
