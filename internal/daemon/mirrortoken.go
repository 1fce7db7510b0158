package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmend/regmend/internal/secret"
)

// MirrorTokenHeader is the header that carries the mirror token. `regmend
// hosts --mirror-token-file` writes it into regmend's [host] entry in
// hosts.toml, containerd sends it with every request to the mirror, and with
// mirror_token_file set the mirror serves nothing to a request without it.
const MirrorTokenHeader = "X-Regmend-Token"

// guardMirror returns the mirror's handler as served. With mirror_token_file
// set (the file is created, mode 0600, if absent) only requests that carry
// the file's token, compared in constant time, reach the mirror; the token
// is re-read when the file changes, so a rotation needs no restart. Without
// it, the mirror is open to every local process, which it says at start.
func (d *Daemon) guardMirror(ctx context.Context) (http.Handler, error) {
	if d.cfg.MirrorTokenFile == "" {
		log.G(ctx).Warn("regmend mirror is open to every local process: without a mirror token (mirror_token_file, serve --mirror-token-file), " +
			"any local user or pod on the host network can read through it every image this node holds from the served registries")
		return d.mirror, nil
	}
	f, err := secret.EnsureFile(ctx, d.cfg.MirrorTokenFile)
	if err != nil {
		return nil, fmt.Errorf("mirror_token_file: %w", err)
	}
	l := log.G(ctx).WithField("file", f.Path)
	if f.Created {
		l.Warn("created the mirror token file: containerd sends the token only once `regmend hosts --mirror-token-file` " +
			"has written it into hosts.toml; until then the mirror refuses every request")
	}
	if f.Exposed() {
		l.Warnf("the mirror token file is readable by group or others (mode %04o): whoever can read it can read through the mirror", f.Mode)
	}
	l.WithField("header", MirrorTokenHeader).Info("regmend mirror serves only requests that carry the mirror token")
	deny, err := newMirrorDeny(d.reg)
	if err != nil {
		return nil, err
	}
	return secret.Require(secret.NewFileSource(f), secret.FromHeader(MirrorTokenHeader), d.mirror, deny), nil
}

// mirrorDeny answers a request refused for the token exactly as the mirror
// answers a miss: 404 with an OCI error body and nothing of any content. A
// 401 would make containerd start its auth flow, and a 5xx would outrank the
// registry's 404 in the error containerd reports.
type mirrorDeny struct {
	refused  *prometheus.CounterVec
	lastWarn atomic.Int64 // unix nanoseconds of the last unusable-token warning
}

func newMirrorDeny(reg prometheus.Registerer) (*mirrorDeny, error) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmend_mirror_refused_total",
		Help: "Mirror requests refused for the mirror token, by reason: missing, wrong, unavailable (the token file is unusable).",
	}, []string{"reason"})
	if err := reg.Register(refused); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register refused-requests metric: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec) // Run called again
		if !ok {
			return nil, fmt.Errorf("register refused-requests metric: %w", err)
		}
		refused = existing
	}
	for _, r := range []secret.Reason{secret.Missing, secret.Wrong, secret.Unavailable} {
		refused.WithLabelValues(string(r))
	}
	return &mirrorDeny{refused: refused}, nil
}

var notFoundBody, _ = json.Marshal(map[string]any{"errors": []map[string]string{{"code": "NAME_UNKNOWN", "message": "not found"}}})

func (m *mirrorDeny) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reason, err, _ := secret.RefusalOf(r.Context())
	m.refused.WithLabelValues(string(reason)).Inc()
	l := log.G(r.Context()).WithField("reason", reason).WithField("method", r.Method).WithField("path", r.URL.Path)
	if reason == secret.Unavailable && m.warnNow() {
		// The operator's problem, not the caller's: say it, at most once a minute.
		l.WithError(err).Warn("mirror refuses every request: the mirror token file is unusable")
	} else {
		l.Debug("mirror request refused: no valid mirror token")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(notFoundBody)))
	w.WriteHeader(http.StatusNotFound)
	if r.Method != http.MethodHead {
		w.Write(notFoundBody)
	}
}

func (m *mirrorDeny) warnNow() bool {
	now, last := time.Now().UnixNano(), m.lastWarn.Load()
	return now-last >= int64(time.Minute) && m.lastWarn.CompareAndSwap(last, now)
}
