package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/test/e2e/harness"
)

// TestDenyList: an operator deleted app@D1 (a revoked digest), the whole
// repository leaky (a leaked secret) and one child of multi:v1's index on
// purpose. With both in serve's
// --deny-file, a CRI pull of either fails "not found" as it would without
// regmend, and neither the sweep nor `regmend heal`/`check --fix` puts them
// back. Rewriting the file, with no restart, lifts both: the pulls succeed
// and the registry is healed.
func TestDenyList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := reapOrphan(ctx, t)
	d2 := reapAnother(ctx, t, s, "leaky")
	// An index the node pulled whose host child the registry lost, and the
	// operator revoked: the rest of the index is allowed.
	multi := harness.PushIndex(ctx, t, s.reg.Ref("multi:v1"), harness.IndexSpec{Platforms: []string{harness.HostPlatform, otherPlatform()}})
	mustPull(ctx, t, s.nodeA, s.reg.Ref("multi:v1"))
	child := multi.Child(t, harness.HostPlatform)
	s.reg.DeleteManifest("multi", child.Digest)
	denyFile := filepath.Join(t.TempDir(), "deny")
	childEntry := s.reg.Addr() + "/multi@" + child.Digest.String()
	list := "# CVE revocation\n" + s.d1.String() + "\n# a secret in a layer\n" + s.reg.Addr() + "/leaky\n" + childEntry + "\n"
	if err := os.WriteFile(denyFile, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, s.nodeA, s.reg, "--deny-file", denyFile, "--sweep-interval", "2s")
	useMirror(ctx, t, s.nodeA, s.reg, srv)

	app, leaky := s.reg.Ref("app@"+s.d1.String()), s.reg.Ref("leaky@"+d2.String())
	mustFailPull(ctx, t, s.nodeA, app)
	mustFailPull(ctx, t, s.nodeA, leaky)
	if n := srv.Metric(t, "regmend_denied_total", `where="mirror"`); n < 2 {
		t.Errorf("regmend_denied_total{where=mirror} = %v after two refused pulls, want at least 2", n)
	}
	// The sweep saw the three images (their records are app:v1, leaky:v1
	// and multi:v1) and pushed none of what is denied. regmend_denied_total
	// counts lookups, so one image can reach 3 over several sweeps: each
	// image is shown refused by its own state, broken (with its content all
	// on the node, an allowed image would be healed), and the CLI's check
	// below names each entry.
	waitFor(t, 30*time.Second, "a sweep refusing the three images", func() bool {
		return srv.Metric(t, "regmend_denied_total", `where="heal"`) >= 3 && srv.Metric(t, "regmend_images", `state="broken"`) == 3
	})
	if s.reg.ManifestExists("app", s.d1) || s.reg.ManifestExists("leaky", d2) || s.reg.ManifestExists("multi", child.Digest) {
		t.Fatal("denied content was pushed back")
	}
	if n := srv.Metric(t, "regmend_images", `state="broken"`); n != 3 {
		t.Errorf("regmend_images{state=broken} = %v, want the 3 images with denied parts", n)
	}

	// The CLI reads the same file: heal of the tag naming D1 exits 1 naming
	// the entry; check --fix reports both broken (denied) and pushes nothing.
	out, code := regmend(ctx, t, s.nodeA, "heal", "--deny-file", denyFile, s.reg.Ref("app:v1"))
	if code != 1 || !strings.Contains(out, `deny list entry "`+s.d1.String()+`"`) {
		t.Errorf("heal of a denied image: exit %d, want 1 naming the entry:\n%s", code, out)
	}
	out, code = regmend(ctx, t, s.nodeA, "check", "--fix", "--registry", s.reg.Addr(), "--deny-file", denyFile, "-o", "json")
	if code != 3 {
		t.Errorf("check --fix of denied images: exit %d, want 3:\n%s", code, out)
	}
	for _, entry := range []string{s.d1.String(), s.reg.Addr() + "/leaky", childEntry} {
		if !strings.Contains(out, `deny list entry \"`+entry+`\"`) {
			t.Errorf("check --fix names no node denied by %s:\n%s", entry, out)
		}
	}
	// A denied child of an allowed index: the heal is partial (exit 3) and
	// says which entry kept the child out.
	out, code = regmend(ctx, t, s.nodeA, "heal", "--deny-file", denyFile, s.reg.Ref("multi:v1"))
	if code != 3 || !strings.Contains(out, "1 denied by the deny list") || !strings.Contains(out, childEntry) {
		t.Errorf("heal of an index with a denied child: exit %d, want 3 naming the entry:\n%s", code, out)
	}
	if s.reg.ManifestExists("app", s.d1) || s.reg.ManifestExists("leaky", d2) || s.reg.ManifestExists("multi", child.Digest) {
		t.Fatal("denied content was pushed back by the CLI")
	}

	// Lifted without a restart: in force once reloaded, then pulled and healed.
	if err := os.WriteFile(denyFile, []byte("# lifted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the rewritten deny file in force", func() bool {
		return srv.Metric(t, "regmend_deny_reloads_total", `result="ok"`) >= 1 && srv.Metric(t, "regmend_deny_entries") == 0
	})
	mustPull(ctx, t, s.nodeA, app)
	mustPull(ctx, t, s.nodeA, leaky)
	waitFor(t, 30*time.Second, "registry healed once lifted", func() bool {
		a, _ := s.reg.TagDigest("app", heal.RetentionTag(s.d1))
		l, _ := s.reg.TagDigest("leaky", heal.RetentionTag(d2))
		return a == s.d1 && l == d2 && s.reg.ManifestExists("multi", child.Digest) // the child by the sweep
	})
	assertHealed(t, s)
}
