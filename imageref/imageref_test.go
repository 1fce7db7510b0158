package imageref

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Ref
	}{
		{"edge:5000/app:v1", Ref{Registry: "edge:5000", Repository: "app", Tag: "v1"}},
		{"edge:5000/team/app@" + dgst, Ref{Registry: "edge:5000", Repository: "team/app", Digest: dgst}},
		{"registry.example.com/a/b:v1@" + dgst, Ref{Registry: "registry.example.com", Repository: "a/b", Tag: "v1", Digest: dgst}},
		{"localhost/app", Ref{Registry: "localhost", Repository: "app"}},
		{"[::1]:5000/app:v1", Ref{Registry: "[::1]:5000", Repository: "app", Tag: "v1"}},
	} {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if got.String() != c.in {
			t.Errorf("Parse(%q).String() = %q", c.in, got.String())
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "name"},
		{"app", "name the registry host"},
		{"app:v1", "name the registry host"},
		{"docker/app:v1", "name the registry host"},
		{"edge:5000/@" + dgst, "invalid reference format"},
		{"edge:5000/a//b:v1", "invalid reference format"},
		{"edge:5000/./app:v1", "invalid reference format"},
		{"edge:5000/App:v1", "lowercase"},
		{"edge:99999/app:v1", "invalid port"},
		{"edge:5000/app@sha256:abc", "digest"},
		{"edge:5000/app@md5:0123456789abcdef0123456789abcdef", "digest"},
		{"https://edge:5000/app:v1", "invalid reference format"},
		{"edge:5000/" + strings.Repeat("a", 256), "more than 255"},
	} {
		_, err := Parse(c.in)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an invalid-argument error naming %q", c.in, err, c.want)
		}
	}
}

func TestValidateRegistry(t *testing.T) {
	for _, ok := range []string{"edge", "edge:5000", "127.0.0.1:5000", "[::1]:5000", "[fe80::1]", "registry.example.com", "my-registry.local:443"} {
		if err := ValidateRegistry(ok); err != nil {
			t.Errorf("ValidateRegistry(%q) = %v", ok, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"https://edge", "scheme"},
		{"edge/x", "path"},
		{"edge:0", "port"},
		{"edge:65536", "port"},
		{"edge:05000", "port"},
		{"edge:", "not a valid host name"},
		{"-edge", "not a valid host name"},
		{"ed ge", "not a valid host name"},
		{"edge@x", "not a valid host name"},
		{"[::1", "not a valid host name"},
	} {
		err := ValidateRegistry(c.in)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ValidateRegistry(%q) = %v, want an invalid-argument error naming %q", c.in, err, c.want)
		}
	}
}

func TestValidateRepository(t *testing.T) {
	for _, ok := range []string{"app", "team/app", "a.b_c__d-e/f", strings.Repeat("a", 255)} {
		if err := ValidateRepository(ok); err != nil {
			t.Errorf("ValidateRepository(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "App", "a//b", "/a", "a/", "a:v1", "a@" + dgst, "-a", "a..b", strings.Repeat("a", 256), "edge:5000/app"} {
		if err := ValidateRepository(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateRepository(%q) = %v, want invalid argument", bad, err)
		}
	}
}

// FuzzParse checks that Parse never panics and that what it accepts is
// accepted again, unchanged, and made of valid parts.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"edge:5000/app:v1", "edge:5000/@" + dgst, "edge:5000/a/b@" + dgst, "[::1]:1/a", "localhost/x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Parse(%q) error not classified: %v", s, err)
			}
			return
		}
		if ValidateRegistry(r.Registry) != nil || ValidateRepository(r.Repository) != nil {
			t.Fatalf("Parse(%q) = %+v with invalid parts", s, r)
		}
		if again, err := Parse(r.String()); err != nil || again != r {
			t.Fatalf("Parse(%q).String() = %q parses as %+v, %v", s, r.String(), again, err)
		}
	})
}
