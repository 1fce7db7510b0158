package kube

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/regmend/regmend/test/e2e/harness"
)

// sleeperLayer builds testdata/sleeper (static) into a one-file layer: the
// cluster's pause image and the workload both run it. The machine is
// loopback only, so registry.k8s.io/pause is out of reach.
func sleeperLayer(t *testing.T) v1.Layer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sleeper")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/sleeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sleeper: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "sleeper", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(b)
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// runnable is a random image (harness.NewImage: its own random layers, so
// its digest and blobs are its own) with the sleeper on top as entrypoint.
func runnable(t *testing.T, sleeper v1.Layer, layers int) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(harness.NewImage(t, harness.ImageSpec{Layers: layers, LayerSize: 64 << 10}), sleeper)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Cmd, cf.Config.Entrypoint = nil, []string{"/sleeper"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func pushRunnable(ctx context.Context, t *testing.T, ref string, img v1.Image) harness.PushedImage {
	t.Helper()
	return harness.WriteImage(ctx, t, ref, img, harness.ParsePlatform(t, harness.HostPlatform))
}

// unmountAll takes down every mount at or below dir, deepest first.
func unmountAll(t *testing.T, dir string) {
	t.Helper()
	ms, err := harness.MountsUnder(dir)
	if err != nil {
		t.Logf("mounts under %s: %v", dir, err)
		return
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if err := syscall.Unmount(ms[i], syscall.MNT_DETACH); err != nil && !strings.Contains(err.Error(), "invalid argument") {
			t.Logf("unmount %s: %v", ms[i], err)
		}
	}
}
