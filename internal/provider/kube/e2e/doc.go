// Package e2e holds the end-to-end test of Kubernetes mode: the documented example
// (examples/kubernetes) against a real kube-apiserver and etcd, with httpbin and the
// sample external processor running in a network namespace of their own and two real
// `sluice kube` processes serving it. The test needs root, iproute2 and the control plane
// binaries hack/testenv/build.sh builds; without any of them it skips, saying why.
package e2e
