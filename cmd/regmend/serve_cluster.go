package main

import (
	"github.com/urfave/cli/v3"

	"github.com/regmend/regmend/internal/daemon"
	"github.com/regmend/regmend/resolver/heal"
)

// clusterFlags are serve's cluster-mode flags (docs/cluster.md). Their
// names are fixed: deployments outside this repository use them.
func clusterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "peer", Usage: "peer endpoint `URL` http(s)://host:port of another node (repeatable)"},
		&cli.StringFlag{Name: "peers-dns", Usage: "every A/AAAA record of HOST is a peer on PORT, re-resolved every 30s (`HOST:PORT`)"},
		&cli.StringFlag{Name: "peer-listen", Usage: "serve peers on `address` (off by default; in cluster mode the node's address)"},
		&cli.StringFlag{Name: "peer-token-file", Usage: "`file` holding the cluster's shared bearer token (required in cluster mode)"},
		&cli.StringFlag{Name: "peer-tls-cert", Usage: "TLS certificate `file` for the peer endpoint, also presented to peers"},
		&cli.StringFlag{Name: "peer-tls-key", Usage: "TLS key `file` for --peer-tls-cert"},
		&cli.StringFlag{Name: "peer-tls-ca", Usage: "CA `file` verifying peers (and their client certificates: mutual TLS)"},
		&cli.DurationFlag{Name: "takeover-after", Value: heal.DefaultTakeoverAfter, Usage: "a holder heals a root itself after the owning peer made no progress this long (per rank)"},
	}
}

// applyClusterFlags sets the cluster settings given on the command line.
func applyClusterFlags(cmd *cli.Command, cfg *daemon.Config) {
	set := func(name string, apply func()) {
		if cmd.IsSet(name) {
			apply()
		}
	}
	set("peer", func() { cfg.Peers = cmd.StringSlice("peer") })
	set("peers-dns", func() { cfg.PeersDNS = cmd.String("peers-dns") })
	set("peer-listen", func() { cfg.PeerListen = cmd.String("peer-listen") })
	set("peer-token-file", func() { cfg.PeerTokenFile = cmd.String("peer-token-file") })
	set("peer-tls-cert", func() { cfg.PeerTLSCert = cmd.String("peer-tls-cert") })
	set("peer-tls-key", func() { cfg.PeerTLSKey = cmd.String("peer-tls-key") })
	set("peer-tls-ca", func() { cfg.PeerTLSCA = cmd.String("peer-tls-ca") })
	set("takeover-after", func() { cfg.TakeoverAfter = daemon.Duration(cmd.Duration("takeover-after")) })
}
