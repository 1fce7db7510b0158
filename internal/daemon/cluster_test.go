package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestClusterSettings(t *testing.T) {
	cfg, err := DecodeConfig([]byte(`registries = ["edge:5000"]
peers = ["http://10.0.0.2:5052"]
peers_dns = "regmend.kube-system.svc:5052"
peer_listen = "0.0.0.0:5052"
peer_token_file = "/etc/regmend/peer-token"
takeover_after = "45s"
`))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Clustered() || cfg.PeerListen != "0.0.0.0:5052" || time.Duration(cfg.TakeoverAfter) != 45*time.Second || cfg.Validate() != nil {
		t.Errorf("cfg = %+v, validate %v", cfg, cfg.Validate())
	}
	if DefaultConfig().Clustered() {
		t.Error("cluster mode on by default")
	}
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"peer url", func(c *Config) { c.Peers = []string{"10.0.0.2:5052"}; c.PeerTokenFile = "t" }, "peers"},
		{"dns", func(c *Config) { c.PeersDNS = "regmend"; c.PeerTokenFile = "t" }, "peers_dns"},
		{"listen", func(c *Config) { c.PeerListen = "5052"; c.PeerTokenFile = "t" }, "peer_listen"},
		{"token", func(c *Config) { c.PeerListen = ":5052" }, "peer_token_file"},
		{"tls pair", func(c *Config) { c.PeerTLSCert = "c.pem" }, "peer_tls_key"},
		{"ca without cert", func(c *Config) { c.PeerListen = ":5052"; c.PeerTokenFile = "t"; c.PeerTLSCA = "ca.pem" }, "peer_tls_ca"},
		{"takeover", func(c *Config) { c.TakeoverAfter = 0 }, "takeover_after"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			if err := cfg.Validate(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v, want invalid argument naming %s", err, c.want)
			}
		})
	}
}
