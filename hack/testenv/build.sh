#!/usr/bin/env bash
# Builds the real Kubernetes control plane that Sluice's Kubernetes-mode tests run
# against: etcd and etcdctl (v3.7.3), kube-apiserver, kubectl and kube-controller-manager
# (v1.37.2, the last one for the conformance harness in test/conformance), from the Go
# module proxy, into a versioned cache outside the repository. Idempotent: binaries
# already in the cache are not rebuilt, so only a machine's first run pays (~6 min on
# 2 cores, ~9 more for kube-controller-manager; a few seconds after that).
#
#   hack/testenv/build.sh          build what is missing, print the directory
#   export KUBEBUILDER_ASSETS="$(hack/testenv/build.sh)"
#
# The directory is ${SLUICE_TESTENV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-testenv/v1.37.2}.
# See ../shared/k8s/TESTENV.md for the recipe and its pitfalls.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${SLUICE_TESTENV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-testenv/${K8S_VERSION}}"
mkdir -p "$out"

log() { echo "testenv: $*" >&2; }

# build NAME MODULE_DIR PACKAGE LDFLAGS: builds into a temporary file first, so that an
# interrupted build never leaves a half-written binary that looks cached.
build() {
	local name=$1 dir=$2 pkg=$3 ldflags=$4
	if [[ -x "$out/$name" ]]; then
		return
	fi
	log "building $name ($pkg) into $out"
	local start=$SECONDS
	(cd "$here/$dir" && go build -trimpath -ldflags="$ldflags" -o "$out/.$name.tmp" "$pkg")
	mv "$out/.$name.tmp" "$out/$name"
	log "built $name in $((SECONDS - start))s"
}

# The versions are part of the cache: a cache made for other versions is rebuilt.
stamp="etcd=${ETCD_VERSION} kubernetes=${K8S_VERSION}"
if [[ "$(cat "$out/VERSIONS" 2>/dev/null)" != "$stamp" ]]; then
	rm -f "$out/etcd" "$out/etcdctl" "$out/kube-apiserver" "$out/kubectl" "$out/kube-controller-manager"
fi

build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build etcdctl etcd go.etcd.io/etcd/etcdctl/v3 "-s -w"

# Without the version stamps the server reports a version client-go cannot parse.
k8s_ld="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
k8s_ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ld"
build kubectl kube k8s.io/kubernetes/cmd/kubectl "$k8s_ld"
# The conformance harness (test/conformance) needs Deployments to become Pods and
# EndpointSlices to follow pod readiness; that is kube-controller-manager's job (~9 min cold).
build kube-controller-manager kube k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ld"

echo "$stamp" > "$out/VERSIONS"
echo "$out"
