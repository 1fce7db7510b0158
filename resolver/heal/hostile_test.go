package heal_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
	"github.com/regmend/regmend/resolver/registry"
)

// TestCredentialsNeverLogged: with credentials from a docker config.json,
// neither the password nor its base64 form appears in an error or in
// debug logs, whether the registry accepts them or not.
func TestCredentialsNeverLogged(t *testing.T) {
	const user, right, wrong = "regmend", "s3cret-Passw0rd!", "wr0ng-Passw0rd?"
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == right {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="regmend-test"`)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	})
	var logs imagetest.SyncBuffer
	prevOut, prevLevel := logrus.StandardLogger().Out, logrus.GetLevel()
	logrus.SetOutput(&logs)
	log.SetLevel("trace")
	t.Cleanup(func() { logrus.SetOutput(prevOut); logrus.SetLevel(prevLevel) })

	var secrets []string
	for _, pw := range []string{wrong, right} {
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
		secrets = append(secrets, pw, auth, base64.StdEncoding.EncodeToString([]byte(pw)))
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{f.Host: map[string]string{"auth": auth}}})
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		remote, err := registry.NewRemote(registry.WithHostsDir(f.HostsDir), registry.WithAuthFile(path), registry.WithRetry(2, 0))
		if err != nil {
			t.Fatal(err)
		}
		h, _ := heal.NewHealer(f.CS, remote)
		ctx := log.WithLogger(context.Background(), log.G(context.Background()))
		_, err = h.Heal(ctx, heal.Target{Registry: f.Host, Repository: "app", Root: m1.Root()})
		if pw == wrong && !errdefs.IsUnauthorized(err) && (err == nil || !strings.Contains(err.Error(), "401")) {
			t.Errorf("heal with a wrong password: err = %v, want unauthenticated", err)
		}
		if pw == right && err != nil {
			t.Fatalf("heal with the right password: %v", err)
		}
		for _, s := range secrets {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("error contains a secret: %v", err)
			}
		}
	}
	f.SetFault(nil)
	if !f.Has(t, "app", "manifests", m1.Blob) {
		t.Error("heal with the right password did not push")
	}
	out := logs.String()
	if len(out) == 0 {
		t.Fatal("no debug log captured")
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("debug log contains the secret %q", s)
		}
	}
}
