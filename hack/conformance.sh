#!/usr/bin/env bash
# Runs the official Gateway API conformance suite (GATEWAY-HTTP profile) against
# `sluice kube` on this machine and writes its report. One command: builds the cached
# control plane (hack/testenv/build.sh: etcd, kube-apiserver, kube-controller-manager),
# then runs test/conformance (a module of its own, build tag `conformance`), then prints
# which tests passed, failed or were skipped. Needs root and iproute2 (`ip`).
#
#   hack/conformance.sh                      report to docs/conformance-report.yaml
#   hack/conformance.sh /tmp/report.yaml     report elsewhere
#
# Environment (see docs/conformance.md): SLUICE_CONFORMANCE_RUN (test names, comma
# separated), SLUICE_CONFORMANCE_SKIP, SLUICE_CONFORMANCE_FEATURES, SLUICE_CONFORMANCE_FAST=1
# (short timeouts, for exploration), SLUICE_CONFORMANCE_TIMEOUTS, SLUICE_CONFORMANCE_ARTIFACTS
# (where logs go; default a new folder under /tmp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
report="$(realpath -m "${1:-$root/docs/conformance-report.yaml}")"
artifacts="${SLUICE_CONFORMANCE_ARTIFACTS:-$(mktemp -d /tmp/sluice-conformance.XXXXXX)}"
mkdir -p "$artifacts" "$(dirname "$report")"
export SLUICE_CONFORMANCE_ARTIFACTS="$artifacts" SLUICE_CONFORMANCE_REPORT="$report"

if [[ $EUID -ne 0 ]]; then
	echo "conformance: needs root (network namespaces for the echo pods; Sluice binds ports 80 and 443)" >&2
	exit 1
fi

start=$SECONDS
KUBEBUILDER_ASSETS="$("$here/testenv/build.sh")"
export KUBEBUILDER_ASSETS
echo "conformance: control plane binaries in $KUBEBUILDER_ASSETS ($((SECONDS - start))s)"

out="$artifacts/go-test.log"
echo "conformance: running the suite; output in $out, logs in $artifacts"
start=$SECONDS
set +e
(cd "$root/test/conformance" &&
	go test -tags conformance -run '^TestConformance$' -timeout 80m -count=1 -v .) 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
echo "conformance: suite finished in $((SECONDS - start))s with status $status"

# Summary from the test output: one line per conformance test the suite ran or skipped.
echo
echo "=== Conformance summary ==="
for r in PASS SKIP FAIL; do
	names="$(grep -E "^\s+--- $r: TestConformance/[^/ ]+ " "$out" | sed -E 's/.*TestConformance\/([^ ]+) .*/\1/' | sort -u || true)"
	n=0
	[[ -n "$names" ]] && n="$(wc -l <<<"$names")"
	echo "$r: $n"
	[[ -n "$names" && $r != SKIP ]] && sed 's/^/    /' <<<"$names"
done
if ! grep -qE "^\s+--- (PASS|FAIL|SKIP): TestConformance/" "$out"; then
	# No test ran: the suite's setup failed. Show why (its message and its last
	# "not ready yet" observation).
	echo "no conformance test ran: the suite's setup failed"
	grep -E '^\s+Messages:' "$out" | sed -E 's/^\s+Messages:\s*/    /' | head -5 || true
	grep -E 'not (Accepted|Programmed|ready) yet|No pods deployed' "$out" | tail -1 | sed -E 's/^\s+\S+ \S+ /    last: /' || true
	grep -E 'Accepted was not in conditions list|Programmed was not in conditions list' "$out" | tail -1 | sed -E 's/^\s+\S+ \S+ /    /' || true
fi
if [[ -s "$report" ]]; then
	echo "report: $report"
	grep -A8 -E '^\s+core:' "$report" | grep -E 'result:|Failed:|Passed:|Skipped:' | sed 's/^ */    core /' || true
else
	echo "no report written (the suite did not get as far as its report; see $out)"
fi
exit "$status"
