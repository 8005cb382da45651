#!/usr/bin/env bash
# Fails when the committed generated files (see hack/generate.sh) differ from what
# controller-gen produces from api/v1alpha1 now. Generates into a temporary directory and
# leaves the work tree untouched. The first run builds controller-gen (about a minute) and
# caches it under ${XDG_CACHE_HOME:-$HOME/.cache}/sluice-tools/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate_into "$tmp"

stale=()
for f in "${GENERATED_FILES[@]}"; do
  if [ ! -f "$REPO_ROOT/$f" ]; then
    echo "missing: $f" >&2
    stale+=("$f")
  elif ! diff -u "$REPO_ROOT/$f" "$tmp/$f" >"$tmp/diff" 2>&1; then
    echo "out of date: $f" >&2
    head -n 40 "$tmp/diff" >&2
    stale+=("$f")
  fi
done
# A generated CRD that the repository does not hold (a new kind) is stale too.
for f in "$tmp"/config/crd/*.yaml; do
  rel="config/crd/$(basename "$f")"
  if [ ! -f "$REPO_ROOT/$rel" ]; then
    echo "missing: $rel (and add it to GENERATED_FILES in hack/lib.sh)" >&2
    stale+=("$rel")
  fi
done

if [ "${#stale[@]}" -ne 0 ]; then
  echo >&2
  echo "generated files are out of date with api/v1alpha1 (controller-gen $CONTROLLER_TOOLS_VERSION)." >&2
  echo "Run hack/generate.sh and commit the result." >&2
  exit 1
fi
echo "generated files are up to date (controller-gen $CONTROLLER_TOOLS_VERSION)"
