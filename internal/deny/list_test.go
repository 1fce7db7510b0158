package deny

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

var (
	dA = digest.FromString("a")
	dB = digest.FromString("b")
	dC = digest.FromString("c")
)

func TestParseForms(t *testing.T) {
	src := "# revoked 2026-12-01, CVE-2026-0001\n\n" +
		dA.String() + "\n" +
		"   edge:5000/leaky   # a secret in a layer\n" +
		"edge:5000/app@" + dB.String() + "\n"
	l, err := Parse("deny.list", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 3 {
		t.Errorf("Len = %d, want 3 (comments and blank lines ignored): %q", l.Len(), l.Entries())
	}
	for _, c := range []struct {
		registry, repo string
		d              digest.Digest
		entry          string
	}{
		{"edge:5000", "app", dA, dA.String()},                    // a digest, any repository
		{"other.example", "x/y", dA, dA.String()},                // and any registry
		{"edge:5000", "leaky", dC, "edge:5000/leaky"},            // a whole repository
		{"edge:5000", "app", dB, "edge:5000/app@" + dB.String()}, // one digest of one repository
		{"edge:5000", "app", dC, ""},                             // another digest there
		{"edge:5000", "other", dB, ""},                           // that digest elsewhere
		{"edge:5001", "leaky", dC, ""},                           // the repository's name on another registry
		{"edge:5000", "leaky/sub", dC, ""},                       // a repository under it is another repository
	} {
		e, ok := l.Denied(c.registry, c.repo, c.d)
		if e != c.entry || ok != (c.entry != "") {
			t.Errorf("Denied(%s, %s, %s) = %q, %v; want %q", c.registry, c.repo, c.d, e, ok, c.entry)
		}
	}
	var none *List
	if _, ok := none.Denied("edge:5000", "app", dA); ok {
		t.Error("a nil list denied something")
	}
}

func TestParseRefusesBadLines(t *testing.T) {
	for _, c := range []struct{ line, why string }{
		{"sha256:1234", "not a digest"},
		{"md5:" + strings.Repeat("0", 32), "not a digest"},
		{"edge:5000/app:v1", "a tag names no content"},
		{"app/x", "name the registry host"},
		{"edge:5000/App", "image reference"},
		{"edge:5000/app@sha256:zz", "image reference"},
		{"https://edge:5000/app", "image reference"},
		{"Edge:5000/app", "write edge:5000"},
		{"docker.io/nginx", "docker.io/library/nginx"},
		{"docker.io/nginx@" + dA.String(), "docker.io/library/nginx"},
		{"sha512:" + strings.Repeat("0", 128), "sha256:<hex>"},
		{"edge:5000/app@sha512:" + strings.Repeat("0", 128), "sha256:<hex>"},
	} {
		src := "# ok\n" + dA.String() + "\n" + c.line + "\n"
		l, err := Parse("/etc/regmend/deny", strings.NewReader(src))
		if l != nil || !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: list %v, err %v; want invalid argument and no list", c.line, l, err)
			continue
		}
		for _, want := range []string{"/etc/regmend/deny", "line 3", c.line, c.why} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %q does not say %q", c.line, err, want)
			}
		}
	}
	big := strings.Repeat(dA.String()+"\n", maxFileSize/len(dA.String())+1)
	if _, err := Parse("big", strings.NewReader(big)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a file over %d bytes: %v, want invalid argument", maxFileSize, err)
	}
}

func TestReadFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := ReadFile(ctx, filepath.Join(dir, "absent")); !errdefs.IsNotFound(err) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want not found", err)
	}
	if _, err := ReadFile(ctx, dir); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("a directory: %v, want failed precondition", err)
	}
	p := filepath.Join(dir, "deny")
	if err := os.WriteFile(p, []byte(dA.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := ReadFile(ctx, p); err != nil || l.Len() != 1 {
		t.Errorf("ReadFile = %v, %v", l, err)
	}
}
