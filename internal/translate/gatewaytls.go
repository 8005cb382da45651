package translate

import (
	"crypto/x509"
	"fmt"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// A Gateway's spec.tls has two halves. frontend makes HTTPS listeners ask clients for a
// certificate and verify it against CA bundles, per port or by default; backend names the
// certificate Sluice presents to the TLS backends (Services with a BackendTLSPolicy) of
// the Gateway's routes. Both fail closed: a listener whose client validation has no
// usable CA is not served, and TLS backends of a Gateway whose client certificate does
// not resolve get no endpoints (5xx) rather than a connection without it.

// frontendTLS is one resolved frontend TLSConfig (the default or one port's), shared by
// the HTTPS listeners it applies to.
type frontendTLS struct {
	// validation is nil when the config asks for no client validation.
	validation *ir.ClientValidation
	// unresolved is the first invalid caCertificateRef (ResolvedRefs False); notAccepted
	// is set when the listeners must not be served (no valid CA, unknown mode).
	unresolved, notAccepted *condState
}

// validateGatewayTLS resolves spec.tls of Gateway gs before its listeners are validated.
func (t *translator) validateGatewayTLS(gs *gatewayState) {
	spec := gs.gw.Spec.TLS
	if spec == nil {
		return
	}
	if spec.Backend != nil && spec.Backend.ClientCertificateRef != nil {
		t.gatewayBackendCert(gs, *spec.Backend.ClientCertificateRef)
	}
	fe := spec.Frontend
	if fe == nil {
		return
	}
	g := gs.gw
	gs.frontendDefault = t.resolveFrontendTLS(gs, "spec.tls.frontend.default", &fe.Default)
	gs.frontendPorts = map[gwv1.PortNumber]*frontendTLS{}
	for i := range fe.PerPort {
		pp := &fe.PerPort[i]
		field := fmt.Sprintf("spec.tls.frontend.perPort[%d]", i)
		if prev := gs.frontendPorts[pp.Port]; prev != nil {
			// Two settings for one port: serving either could let in clients the other
			// keeps out.
			msg := t.problem(KindGateway, g.Namespace, g.Name, field+".port",
				fmt.Sprintf("port %d is configured twice, it must be unique", pp.Port))
			prev.notAccepted = &condState{reason: string(gwv1.ListenerReasonUnsupportedValue), msg: msg}
			continue
		}
		gs.frontendPorts[pp.Port] = t.resolveFrontendTLS(gs, field+".tls", &pp.TLS)
	}
}

// applyListenerFrontendTLS gives HTTPS listener l of gs (its own or a ListenerSet's) the
// frontend TLSConfig of its port, else the default. spec.tls.frontend must be set.
func applyListenerFrontendTLS(gs *gatewayState, l *listenerState) {
	f := gs.frontendPorts[l.spec.Port]
	if f == nil {
		f = gs.frontendDefault
	}
	if f.unresolved != nil && l.unresolved == nil {
		l.unresolved = f.unresolved
	}
	if f.notAccepted != nil {
		l.reject(f.notAccepted)
	}
	l.client = f.validation
}

// applyFrontendTLS gives each HTTPS listener of gs the frontend TLSConfig of its port,
// else the default, once the listeners are validated.
func (t *translator) applyFrontendTLS(gs *gatewayState) {
	fe := gs.gw.Spec.TLS
	if fe == nil || fe.Frontend == nil {
		return
	}
	https := map[gwv1.PortNumber]bool{}
	for _, l := range gs.listeners {
		if l.protocol == ir.ProtocolHTTPS {
			https[l.spec.Port] = true
			applyListenerFrontendTLS(gs, l)
		}
	}
	g := gs.gw
	for i, pp := range fe.Frontend.PerPort {
		if !https[pp.Port] {
			t.problem(KindGateway, g.Namespace, g.Name, fmt.Sprintf("spec.tls.frontend.perPort[%d].port", i),
				fmt.Sprintf("no HTTPS listener of this Gateway uses port %d; ignored", pp.Port))
		}
	}
}

// resolveFrontendTLS resolves the client validation of one TLSConfig at field.
func (t *translator) resolveFrontendTLS(gs *gatewayState, field string, cfg *gwv1.TLSConfig) *frontendTLS {
	f := &frontendTLS{}
	v := cfg.Validation
	if v == nil {
		return f
	}
	g := gs.gw
	bad := func(sub, reason, msg string) *condState {
		return &condState{reason: reason, msg: t.problem(KindGateway, g.Namespace, g.Name, field+sub, msg)}
	}
	out := &ir.ClientValidation{CACertificates: []string{}}
	switch v.Mode {
	case "", gwv1.AllowValidOnly:
	case gwv1.AllowInsecureFallback:
		out.InsecureFallback = true
		if gs.insecureFrontend == "" {
			gs.insecureFrontend = field + ".validation.mode"
		}
	default:
		f.notAccepted = bad(".validation.mode", string(gwv1.ListenerReasonUnsupportedValue),
			fmt.Sprintf("%q is not supported, expected AllowValidOnly or AllowInsecureFallback", v.Mode))
		return f
	}
	for i, ref := range v.CACertificateRefs {
		sub := fmt.Sprintf(".validation.caCertificateRefs[%d]", i)
		ns := g.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		group, kind, name := string(ref.Group), string(ref.Kind), string(ref.Name)
		ca, reason, msg := t.clientCA(g.Namespace, ns, group, kind, name)
		if reason != "" {
			if c := bad(sub, reason, msg); f.unresolved == nil {
				f.unresolved = c
			}
			continue
		}
		out.CAPEM = append(out.CAPEM, ca...)
		out.CACertificates = append(out.CACertificates, nn(ns, name))
	}
	if len(out.CACertificates) == 0 {
		msg := "at least one is required"
		if f.unresolved != nil {
			msg = "no reference is valid: " + f.unresolved.msg
		} else {
			f.unresolved = bad(".validation.caCertificateRefs", string(gwv1.ListenerReasonInvalidCACertificateRef), msg)
			msg = f.unresolved.msg
		}
		// Without a CA no client can be verified: the listeners are not served rather
		// than served without the validation their owner asked for.
		f.notAccepted = &condState{reason: string(gwv1.ListenerReasonNoValidCACertificate), msg: msg}
		return f
	}
	f.validation = out
	return f
}

// clientCA returns the CA bundle of one caCertificateRef of a Gateway in namespace from,
// or a listener ResolvedRefs reason and a message.
func (t *translator) clientCA(from, ns, group, kind, name string) ([]byte, string, string) {
	known := group == "" && (kind == KindConfigMap || kind == KindSecret)
	if known && !t.refAllowed(gwv1.GroupName, KindGateway, from, group, kind, ns, name) {
		return nil, string(gwv1.ListenerReasonRefNotPermitted),
			fmt.Sprintf("%s %s/%s is in another namespace and no ReferenceGrant there allows it", kind, ns, name)
	}
	ca, reason, msg := t.caBundle(ns, group, kind, name)
	switch {
	case reason == string(gwv1.BackendTLSPolicyReasonInvalidKind):
		return nil, string(gwv1.ListenerReasonInvalidCACertificateKind), msg
	case reason != "":
		return nil, string(gwv1.ListenerReasonInvalidCACertificateRef), msg
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, string(gwv1.ListenerReasonInvalidCACertificateRef),
			fmt.Sprintf("%s %s/%s: ca.crt holds no valid certificate", kind, ns, name)
	}
	return ca, "", ""
}

// gatewayBackendCert resolves spec.tls.backend.clientCertificateRef: a kubernetes.io/tls
// Secret, as for listener certificates.
func (t *translator) gatewayBackendCert(gs *gatewayState, ref gwv1.SecretObjectReference) {
	g := gs.gw
	cert, reason, msg := t.resolveCertificate(KindGateway, g.Namespace, ref)
	if reason == "" {
		gs.backendCert = &cert
		return
	}
	if reason != string(gwv1.GatewayReasonRefNotPermitted) {
		reason = string(gwv1.GatewayReasonInvalidClientCertificateRef)
	}
	gs.backendCertBad = &condState{reason: reason,
		msg: t.problem(KindGateway, g.Namespace, g.Name, "spec.tls.backend.clientCertificateRef", msg)}
}

// gatewayBackends returns the backends a route of Gateway gs uses: those reached over
// TLS because of a BackendTLSPolicy present the Gateway's client certificate, or have
// no endpoints when it did not resolve. A Service may serve routes of several Gateways,
// so the Gateway's backends are copies, one per backend and Gateway (the data plane
// keeps one balancer per backend).
func (t *translator) gatewayBackends(gs *gatewayState, in []ir.WeightedBackend) []ir.WeightedBackend {
	if gs.backendCert == nil && gs.backendCertBad == nil {
		return in
	}
	var out []ir.WeightedBackend
	for i, wb := range in {
		if wb.Backend == nil || !t.policyTLS[wb.Backend] {
			continue
		}
		if out == nil {
			out = append([]ir.WeightedBackend(nil), in...)
		}
		b := gs.backendCopies[wb.Backend]
		if b == nil {
			b = withClientCert(wb.Backend, gs.backendCert)
			if gs.backendCopies == nil {
				gs.backendCopies = map[*ir.Backend]*ir.Backend{}
			}
			gs.backendCopies[wb.Backend] = b
		}
		out[i].Backend = b
	}
	if out == nil {
		return in
	}
	return out
}

// gatewayMirrors is gatewayBackends for the backends of a route's mirrors: a mirrored
// request presents the Gateway's client certificate as the original does.
func (t *translator) gatewayMirrors(gs *gatewayState, in []ir.Mirror) []ir.Mirror {
	if len(in) == 0 {
		return in
	}
	wbs := make([]ir.WeightedBackend, len(in))
	for i, m := range in {
		wbs[i].Backend = m.Backend
	}
	wbs = t.gatewayBackends(gs, wbs)
	out := append([]ir.Mirror(nil), in...)
	for i := range out {
		out[i].Backend = wbs[i].Backend
	}
	return out
}

// gatewayExtProc is gatewayBackends for a processor: one reached over TLS because of a
// BackendTLSPolicy is a backend of the Gateway too, and sees its client certificate.
func (t *translator) gatewayExtProc(gs *gatewayState, ep *ir.ExtProc) *ir.ExtProc {
	if ep == nil || ep.Backend == nil {
		return ep
	}
	b := t.gatewayBackends(gs, []ir.WeightedBackend{{Backend: ep.Backend}})[0].Backend
	if b == ep.Backend {
		return ep
	}
	// One copy per processor and Gateway, as for backends: every route of the Gateway
	// shares the copy, so the data plane keeps one processor connection for them all.
	c := gs.extProcCopies[ep]
	if c == nil {
		cp := *ep
		cp.Backend = b
		c = &cp
		if gs.extProcCopies == nil {
			gs.extProcCopies = map[*ir.ExtProc]*ir.ExtProc{}
		}
		gs.extProcCopies[ep] = c
	}
	return c
}

// withClientCert returns a copy of TLS backend b presenting cert, or without endpoints
// when cert is nil (the Gateway's certificate did not resolve).
func withClientCert(b *ir.Backend, cert *ir.Certificate) *ir.Backend {
	c := *b
	tlsCopy := *b.TLS
	c.TLS = &tlsCopy
	if cert == nil {
		c.Endpoints = []ir.Endpoint{}
		return &c
	}
	tlsCopy.ClientCertificate, tlsCopy.ClientCertPEM, tlsCopy.ClientKeyPEM = cert.Name, cert.CertPEM, cert.KeyPEM
	return &c
}
