# Entry points that need more than `go test ./...`. Everything here is a thin wrapper around
# a script in hack/, so that CI and people run the same commands.

.PHONY: test conformance

# Unit, golden and (when the cached control plane exists) envtest-based tests of the root
# module; the conformance module is separate and run by `make conformance`.
test:
	go test ./...

# The Gateway API conformance suite (GATEWAY-HTTP) against `sluice kube`; needs root.
# REPORT=path overrides docs/conformance-report.yaml.
conformance:
	hack/conformance.sh $(REPORT)
