#!/usr/bin/env bash
# Regenerates the code and manifests derived from api/v1alpha1 with controller-gen:
#   api/v1alpha1/zz_generated.deepcopy.go  DeepCopy* methods (runtime.Object for the root kinds)
#   config/crd/*.yaml                      the CRDs of Backend and TrafficPolicy
#   deploy/crds/, charts/sluice/crds/      copies of those CRDs for kubectl and Helm
# Run it after changing a type or a +kubebuilder marker, and commit the result;
# hack/verify-generated.sh (CI) fails when the committed files are stale.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

generate_into "$REPO_ROOT"
echo "generated with controller-gen $CONTROLLER_TOOLS_VERSION:"
printf '  %s\n' "${GENERATED_FILES[@]}"
