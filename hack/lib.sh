# shellcheck shell=bash
# Shared by hack/generate.sh and hack/verify-generated.sh: the pinned controller-gen, built
# once into a per-version cache directory, and the one function that runs it.

# controller-tools v0.21.x is the line built against k8s.io/* v0.36, like this module.
CONTROLLER_TOOLS_VERSION="${CONTROLLER_TOOLS_VERSION:-v0.21.0}"
SLUICE_TOOLS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sluice-tools"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ensure_controller_gen prints the path of controller-gen, building it first if the cache
# does not hold this version yet. The binary is installed into a temporary directory and
# renamed into place, so an interrupted or concurrent build never leaves a broken one.
ensure_controller_gen() {
  local dir="$SLUICE_TOOLS_CACHE/controller-gen-$CONTROLLER_TOOLS_VERSION"
  local bin="$dir/controller-gen"
  if [ ! -x "$bin" ]; then
    mkdir -p "$SLUICE_TOOLS_CACHE"
    local tmp
    tmp="$(mktemp -d "$SLUICE_TOOLS_CACHE/.build.XXXXXX")"
    echo "building controller-gen $CONTROLLER_TOOLS_VERSION into $dir" >&2
    # Outside any module, with the caller's -mod flags cleared: `go install pkg@version`
    # builds the tool with its own go.mod, not this repository's.
    (cd "$tmp" && GOFLAGS= GOBIN="$tmp/bin" go install \
      "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION") >&2
    mkdir -p "$dir"
    mv -f "$tmp/bin/controller-gen" "$bin"
    rm -rf "$tmp"
  fi
  printf '%s\n' "$bin"
}

# generate_into OUT writes the generated files under OUT, laid out as in the repository:
#   OUT/api/v1alpha1/zz_generated.deepcopy.go
#   OUT/config/crd/gateway.sluice.dev_{backends,trafficpolicies}.yaml
#   OUT/deploy/crds/ and OUT/charts/sluice/crds/ (copies of config/crd, for kubectl and Helm)
generate_into() {
  local out="$1" cg
  cg="$(ensure_controller_gen)"
  mkdir -p "$out/api/v1alpha1" "$out/config/crd" "$out/deploy/crds" "$out/charts/sluice/crds"
  # Remove what an earlier run generated, so a renamed or deleted kind leaves nothing behind.
  rm -f "$out"/config/crd/gateway.sluice.dev_*.yaml "$out"/deploy/crds/gateway.sluice.dev_*.yaml \
    "$out"/charts/sluice/crds/gateway.sluice.dev_*.yaml
  (cd "$REPO_ROOT" && "$cg" \
    object:headerFile=hack/boilerplate.go.txt \
    crd \
    paths=./api/v1alpha1/... \
    output:object:dir="$out/api/v1alpha1" \
    output:crd:dir="$out/config/crd")
  cp "$out"/config/crd/gateway.sluice.dev_*.yaml "$out/deploy/crds/"
  cp "$out"/config/crd/gateway.sluice.dev_*.yaml "$out/charts/sluice/crds/"
}

# The generated files, relative to the repository root, for verify-generated.sh.
GENERATED_FILES=(
  api/v1alpha1/zz_generated.deepcopy.go
  config/crd/gateway.sluice.dev_backends.yaml
  config/crd/gateway.sluice.dev_trafficpolicies.yaml
  deploy/crds/gateway.sluice.dev_backends.yaml
  deploy/crds/gateway.sluice.dev_trafficpolicies.yaml
  charts/sluice/crds/gateway.sluice.dev_backends.yaml
  charts/sluice/crds/gateway.sluice.dev_trafficpolicies.yaml
)
