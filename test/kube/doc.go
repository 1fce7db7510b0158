// Package kube runs the chart on a real one-node Kubernetes cluster (make
// test-kube): etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kubelet, built from the modules pinned in tools/go.mod, on loopback,
// with the e2e harness's containerd as the kubelet's runtime. It installs
// regmend with helm as the README says, heals a reaped orphan a pod pulls by
// digest, reads regmend's Events on the Node, denies a digest deleted on
// purpose through the chart's ConfigMap (it stays gone), and uninstalls.
//
// It never touches the machine's own Kubernetes or containerd: every
// component's state lives in the test's temporary directories.
package kube
