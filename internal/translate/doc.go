// Package translate turns Gateway API resources and Sluice's own kinds into the IR the data
// plane serves, plus the status of every object it read. Translate is a pure function: no
// I/O, no clock, no globals, and the same input always gives the same output whatever the
// order of the objects, so golden files (testdata/*.in.yaml → *.out.yaml, regenerated with
// `go test ./internal/translate -update`) pin its behaviour.
//
// Where the Gateway API leaves a choice to implementations, Sluice decides as follows.
//
//   - Listeners of several Gateways on one port merge into one ir.Port. Within a Gateway,
//     every listener of a protocol or hostname conflict is Conflicted (and not served);
//     across Gateways the oldest Gateway keeps the port or hostname and only the younger
//     listener is Conflicted, so adding a Gateway never breaks one that serves.
//   - A conflicted listener is also Accepted=False (it gets no data plane configuration),
//     with the conflict's reason.
//   - Routes are grouped per listener into virtual hosts, one per effective hostname (the
//     intersection of listener and route hostnames). A request is matched only against the
//     routes of its most specific virtual host, as Envoy-based implementations do.
//   - RegularExpression paths rank after Exact and before PathPrefix (longer patterns
//     first), so a regex stays reachable next to a "/" prefix route.
//   - A PathPrefix value's trailing "/" is dropped ("/foo/" is "/foo"), as the spec says
//     it is ignored; its length for precedence is counted without it.
//   - An invalid rule (bad match, unsupported or incompatible filter, bad timeout) is left
//     out and the route is PartiallyInvalid; the other rules serve. Unsupported filters
//     invalidate the rule rather than being skipped: serving without, say, a CORS or
//     auth filter would be worse than not serving.
//   - A backendRef that does not resolve keeps its weight with a nil Backend: the data
//     plane answers 500 for that share. Weight 0 refs get no share. A rule with no backend
//     at all (no refs, or all weight 0) and no redirect has one nil backend: all 500.
//   - An HTTPRoute without rules gets the CRD's default rule (PathPrefix "/", no backends).
//   - Backend backendRefs with a port use only the Backend's endpoints on that port.
//   - Services resolve through EndpointSlices (ready or unknown-ready endpoints, slice port
//     named like the Service port); ExternalName Services resolve to their name.
//   - A TrafficPolicy's processor is spoken to over h2c unless its Backend is https. Two
//     policies on the same target and phase: the older wins, the other is Conflicted.
//   - Gateway spec.tls: see gatewaytls.go.
//   - Some fields are not supported and are reported as problems: Gateway spec.addresses
//     (the Gateway is not accepted), rule retry and sessionPersistence (ignored),
//     backendRef filters (rule invalid), listener tls.options (ignored).
package translate
