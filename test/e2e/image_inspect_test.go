package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmend/regmend/internal/imagebuild"
)

// inspectImage reads the pushed image back from the registry and checks both
// platforms: the OCI annotations, the entrypoint, a root filesystem of
// exactly regmend and the CA bundle, and a static ELF binary for the
// platform's machine (the amd64 one also runs, in TestImageRunsAsTheDaemonSet).
func inspectImage(ctx context.Context, t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pushed image index: %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{imagebuild.AnnotationVersion, imagebuild.AnnotationRevision, imagebuild.AnnotationSource} {
		if m.Annotations[k] == "" {
			t.Errorf("index annotation %s is empty", k)
		}
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var platforms []string
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform: CRI could not pick it", d.Digest)
		}
		platforms = append(platforms, d.Platform.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{imagebuild.BinaryPath}) {
			t.Errorf("%s: entrypoint %q", d.Platform, cf.Config.Entrypoint)
		}
		bin, files, size := rootFS(t, img)
		if !slices.Equal(files, []string{"etc/ssl/certs/ca-certificates.crt", "usr/bin/regmend"}) {
			t.Errorf("%s: files %q, want only regmend and the CA bundle", d.Platform, files)
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: %s is not an ELF file: %v", d.Platform, imagebuild.BinaryPath, err)
		}
		if want := machines[d.Platform.Architecture]; f.Machine != want {
			t.Errorf("%s: binary is for %s, want %s", d.Platform, f.Machine, want)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: binary is dynamically linked; the image has no libc", d.Platform)
			}
		}
		t.Logf("%s: %s %s, %d MB compressed, binary %d MB", d.Platform, d.Digest.String()[:19], f.Machine, size>>20, len(bin)>>20)
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %q, want linux/amd64 and linux/arm64", platforms)
	}
}

// rootFS returns the image's regmend binary, the regular files it holds
// (sorted) and its compressed size.
func rootFS(t *testing.T, img v1.Image) ([]byte, []string, int64) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var bin []byte
	var files []string
	var size int64
	for _, l := range layers {
		n, _ := l.Size()
		size += n
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			files = append(files, h.Name)
			if "/"+h.Name == imagebuild.BinaryPath {
				if bin, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc.Close()
	}
	slices.Sort(files)
	return bin, files, size
}
