package e2e

import (
	"fmt"
	"net"
	"strings"
)

// Builders of the YAML a test serves. Every object lives in namespace default; the gateway
// is "gw" with one HTTP listener "http" on {{PORT}}.

const gatewayYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, port: {{PORT}}, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
`

// backendYAML is a Backend named name for the server at addr (host:port).
func backendYAML(name, addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: %s, namespace: default}
spec: {endpoints: [{host: %s, port: %s}]}
`, name, h, p)
}

// procBackendYAML is a Backend for a gRPC processor (h2c).
func procBackendYAML(name, addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: %s, namespace: default}
spec: {appProtocol: kubernetes.io/h2c, endpoints: [{host: %s, port: %s}]}
`, name, h, p)
}

// rule is one HTTPRoute rule: an optional name, a path prefix ("" matches all) and the
// Backend it sends to.
type rule struct{ name, prefix, backend string }

// routeYAML is an HTTPRoute on gw for hostname with the given rules.
func routeYAML(name, hostname string, rules ...rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [%q]
  rules:
`, name, hostname)
	for _, r := range rules {
		b.WriteString("  - ")
		if r.name != "" {
			fmt.Fprintf(&b, "name: %s\n    ", r.name)
		}
		if r.prefix != "" {
			fmt.Fprintf(&b, "matches: [{path: {type: PathPrefix, value: %q}}]\n    ", r.prefix)
		}
		fmt.Fprintf(&b, "backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: %s}]\n", r.backend)
	}
	return b.String()
}

// target is a policy's targetRef: kind Gateway or HTTPRoute, with an optional section.
type target struct{ kind, name, section string }

// policyYAML is a TrafficPolicy on target in phase ("" = default) whose extProc is the
// given YAML mapping body (lines indented under extProc; "" for none) using processor
// Backend proc ("" to omit the backendRef, as for disabled).
func policyYAML(name string, tg target, phase, proc, extProc string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: gateway.sluice.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: %s, namespace: default}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: %s, name: %s`, name, tg.kind, tg.name)
	if tg.section != "" {
		fmt.Fprintf(&b, ", sectionName: %s", tg.section)
	}
	b.WriteString("}\n  traffic:\n")
	if phase != "" {
		fmt.Fprintf(&b, "    phase: %s\n", phase)
	}
	b.WriteString("    extProc:\n")
	if proc != "" {
		fmt.Fprintf(&b, "      backendRef: {group: gateway.sluice.dev, kind: Backend, name: %s}\n", proc)
		// Envoy's 200ms default is too tight for a loaded -race run; tests about
		// timeouts set their own.
		if !strings.Contains(extProc, "messageTimeout") {
			b.WriteString("      messageTimeout: 5s\n")
		}
	}
	for _, l := range strings.Split(strings.TrimRight(extProc, "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			b.WriteString("      " + l + "\n")
		}
	}
	return b.String()
}

// docs joins YAML documents.
func docs(ds ...string) string { return strings.Join(ds, "---\n") }

var (
	gwTarget = target{kind: "Gateway", name: "gw"}
)

func routeTarget(name string) target { return target{kind: "HTTPRoute", name: name} }
