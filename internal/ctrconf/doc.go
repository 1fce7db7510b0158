// Package ctrconf reads containerd's config.toml (and the files it imports),
// and the k3s and rke2 files that generate it, and names each setting that
// silently defeats regmend, with the file and line that set it and the line
// that fixes it:
//
//   - CRI's discard_unpacked_layers = true: containerd deletes layer blobs
//     once they are unpacked, so the node holds manifests and configs but no
//     layers, and cannot serve or re-push them;
//   - a CRI registry config_path that containerd 2.x's transfer service does
//     not read (a colon-separated list, unset, another directory); the check
//     itself is internal/hostsfile's CheckCRIConfigPath, reused here;
//   - the k3s and rke2 layouts: they write their containerd's certs.d from
//     /etc/rancher/{k3s,rke2}/registries.yaml each time they start, so an
//     entry written into certs.d is lost at their next restart.
//
// It never writes any of these files, and never talks to containerd: it
// judges the files as containerd would read them at its next start.
package ctrconf
