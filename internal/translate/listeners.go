package translate

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// gatewayState is a Gateway being served and what translation found out about it.
type gatewayState struct {
	gw        *gwv1.Gateway
	key       types.NamespacedName
	listeners []*listenerState
	// invalid, when set, is why the whole Gateway is not accepted.
	invalid *condState
	// addresses are the Gateway's own addresses, from the address pool; nil without one.
	addresses []netip.Addr
	// noAddress, when set, is why the Gateway got no address from the pool: accepted,
	// but not served.
	noAddress *condState

	// frontendDefault and frontendPorts are spec.tls.frontend resolved (see gatewaytls.go).
	frontendDefault *frontendTLS
	frontendPorts   map[gwv1.PortNumber]*frontendTLS
	// insecureFrontend is the field that sets AllowInsecureFallback, if any.
	insecureFrontend string
	// backendCert is the client certificate for TLS backends; backendCertBad is why
	// spec.tls.backend.clientCertificateRef did not resolve.
	backendCert    *ir.Certificate
	backendCertBad *condState
	// backendCopies are the Gateway's copies of TLS backends, with its certificate.
	backendCopies map[*ir.Backend]*ir.Backend
	// extProcCopies are the Gateway's copies of processors reached over TLS.
	extProcCopies map[*ir.ExtProc]*ir.ExtProc
	// sets are the ListenerSets attached to the Gateway, in the order of precedence of
	// their listeners (oldest first).
	sets []*listenerSetState
}

// allListeners are the Gateway's own listeners, then those of its attached ListenerSets:
// the merged list the spec has served, in order of precedence.
func (gs *gatewayState) allListeners() []*listenerState {
	if len(gs.sets) == 0 {
		return gs.listeners
	}
	out := append([]*listenerState(nil), gs.listeners...)
	for _, s := range gs.sets {
		out = append(out, s.listeners...)
	}
	return out
}

// condState is the outcome of one condition: ok, or the reason and message of a failure.
type condState struct {
	reason, msg string
}

// listenerState is one listener of a served Gateway.
type listenerState struct {
	gw *gatewayState
	// set is the ListenerSet the listener comes from; nil for the Gateway's own.
	set      *listenerSetState
	spec     *gwv1.Listener
	field    string // "spec.listeners[i]"
	name     string // "namespace/gateway/listener" or "namespace/listenerset/listener"
	hostname string
	protocol ir.Protocol

	// notAccepted, unresolved and conflicted are nil when the condition is fine.
	notAccepted *condState
	unresolved  *condState
	conflicted  *condState

	supportedKinds []gwv1.RouteGroupKind
	certs          []ir.Certificate
	client         *ir.ClientValidation
	attachedRoutes int32
	// attachments are the routes attached, with their effective hostnames.
	attachments []*attachment
	attachedBy  map[*routeState]*attachment
	ir          *ir.Listener
}

// ready reports whether the listener is served: accepted, not conflicted, and with a
// certificate when HTTPS.
func (l *listenerState) ready() bool {
	if l.notAccepted != nil || l.conflicted != nil || l.gw.noAddress != nil {
		return false
	}
	return l.protocol != ir.ProtocolHTTPS || len(l.certs) > 0
}

// namespace is the namespace of the object that defines the listener: the one
// allowedRoutes "Same" and certificateRefs are relative to.
func (l *listenerState) namespace() string {
	if l.set != nil {
		return l.set.key.Namespace
	}
	return l.gw.key.Namespace
}

// reject marks the listener not accepted, keeping the first reason given.
func (l *listenerState) reject(c *condState) {
	if l.notAccepted == nil {
		l.notAccepted = c
	}
}

// servesGateway reports whether Sluice serves Gateway g.
func (t *translator) servesGateway(g *gwv1.Gateway) bool {
	if !t.opts.selects(key(g)) {
		return false
	}
	if t.opts.AllGatewayClasses {
		return true
	}
	c := t.classes[string(g.Spec.GatewayClassName)]
	return c != nil && string(c.Spec.ControllerName) == t.opts.ControllerName
}

// translateGateways validates the served Gateways' listeners, resolves their
// certificates and settles port conflicts, oldest Gateway first.
func (t *translator) translateGateways() {
	var gws []*gwv1.Gateway
	for _, g := range t.res.Gateways {
		if t.servesGateway(g) {
			gws = append(gws, g)
		}
	}
	sort.Slice(gws, func(i, j int) bool { return olderFirst(gws[i], gws[j]) })
	for _, g := range gws {
		gs := &gatewayState{gw: g, key: key(g)}
		t.ourGateways = append(t.ourGateways, gs)
		t.gwByName[gs.key] = gs
		t.validateGateway(gs)
	}
	t.translateListenerSets()
	t.assignAddresses()
	t.settleConflicts()
}

func (t *translator) validateGateway(gs *gatewayState) {
	g := gs.gw
	t.validateGatewayTLS(gs)
	if inf := g.Spec.Infrastructure; inf != nil && inf.ParametersRef != nil {
		// No kind of Gateway parameters exists for Sluice: whatever the reference names,
		// serving the Gateway would ignore settings its owner asked for.
		ref := inf.ParametersRef
		msg := t.problem(KindGateway, g.Namespace, g.Name, "spec.infrastructure.parametersRef",
			fmt.Sprintf("%s %s is not supported: Sluice takes no Gateway parameters", groupKind(string(ref.Group), string(ref.Kind)), ref.Name))
		gs.invalidate(string(gwv1.GatewayReasonInvalidParameters), msg)
	}
	t.validateAddresses(gs)
	t.validateAllowedListeners(gs)
	names := map[gwv1.SectionName]bool{}
	for i := range g.Spec.Listeners {
		spec := &g.Spec.Listeners[i]
		l := &listenerState{
			gw:    gs,
			spec:  spec,
			field: fmt.Sprintf("spec.listeners[%d]", i),
			name:  fmt.Sprintf("%s/%s/%s", g.Namespace, g.Name, spec.Name),
		}
		gs.listeners = append(gs.listeners, l)
		if names[spec.Name] {
			l.reject(t.listenerProblem(l, ".name", string(gwv1.ListenerReasonUnsupportedValue),
				fmt.Sprintf("listener name %q is used twice", spec.Name)))
		}
		names[spec.Name] = true
		t.validateListener(l)
	}
	t.applyFrontendTLS(gs)
}

// listenerProblem records a problem at field (relative to the listener) and returns the
// failed condition carrying it.
func (t *translator) listenerProblem(l *listenerState, field, reason, msg string) *condState {
	if l.set != nil {
		k := l.set.key
		return &condState{reason: reason, msg: t.problem(KindListenerSet, k.Namespace, k.Name, l.field+field, msg)}
	}
	g := l.gw.gw
	return &condState{reason: reason, msg: t.problem(KindGateway, g.Namespace, g.Name, l.field+field, msg)}
}

func (t *translator) validateListener(l *listenerState) {
	spec := l.spec
	switch spec.Protocol {
	case gwv1.HTTPProtocolType:
		l.protocol = ir.ProtocolHTTP
	case gwv1.HTTPSProtocolType:
		l.protocol = ir.ProtocolHTTPS
	default:
		l.reject(t.listenerProblem(l, ".protocol", string(gwv1.ListenerReasonUnsupportedProtocol),
			fmt.Sprintf("protocol %q is not supported, expected HTTP or HTTPS", spec.Protocol)))
		return
	}
	if spec.Port < 1 || spec.Port > 65535 {
		l.reject(t.listenerProblem(l, ".port", string(gwv1.ListenerReasonUnsupportedValue),
			fmt.Sprintf("port %d is out of range 1-65535", spec.Port)))
	}
	if spec.Hostname != nil {
		h := string(*spec.Hostname)
		if err := validateHostname(h, true); err != nil {
			l.reject(t.listenerProblem(l, ".hostname", string(gwv1.ListenerReasonUnsupportedValue), err.Error()))
		}
		l.hostname = strings.ToLower(h)
	}
	t.listenerKinds(l)
	t.listenerNamespaces(l)
	switch {
	case l.protocol == ir.ProtocolHTTP && spec.TLS != nil:
		l.reject(t.listenerProblem(l, ".tls", string(gwv1.ListenerReasonUnsupportedValue),
			"must not be set for protocol HTTP"))
	case l.protocol == ir.ProtocolHTTPS:
		t.listenerCertificates(l)
	}
}

// listenerKinds checks allowedRoutes.kinds: HTTP and HTTPS listeners serve HTTPRoutes
// and GRPCRoutes.
func (t *translator) listenerKinds(l *listenerState) {
	kind := func(k string) gwv1.RouteGroupKind {
		return gwv1.RouteGroupKind{Group: ptr(gwv1.Group(gwv1.GroupName)), Kind: gwv1.Kind(k)}
	}
	if l.spec.AllowedRoutes == nil || len(l.spec.AllowedRoutes.Kinds) == 0 {
		l.supportedKinds = []gwv1.RouteGroupKind{kind(KindHTTPRoute), kind(KindGRPCRoute)}
		return
	}
	for i, k := range l.spec.AllowedRoutes.Kinds {
		group := gwv1.GroupName
		if k.Group != nil {
			group = string(*k.Group)
		}
		if group == gwv1.GroupName && (k.Kind == KindHTTPRoute || k.Kind == KindGRPCRoute) {
			l.supportedKinds = append(l.supportedKinds, kind(string(k.Kind)))
			continue
		}
		c := t.listenerProblem(l, fmt.Sprintf(".allowedRoutes.kinds[%d]", i), string(gwv1.ListenerReasonInvalidRouteKinds),
			fmt.Sprintf("route kind %s/%s is not supported, expected %s/HTTPRoute or GRPCRoute", group, k.Kind, gwv1.GroupName))
		if l.unresolved == nil {
			l.unresolved = c
		}
	}
	if l.supportedKinds == nil {
		l.supportedKinds = []gwv1.RouteGroupKind{}
	}
}

// listenerNamespaces checks allowedRoutes.namespaces. A listener whose namespace rule is
// invalid is not accepted: guessing which namespaces were meant could expose routes.
func (t *translator) listenerNamespaces(l *listenerState) {
	ar := l.spec.AllowedRoutes
	if ar == nil || ar.Namespaces == nil {
		return
	}
	ns := ar.Namespaces
	from := gwv1.NamespacesFromSame
	if ns.From != nil {
		from = *ns.From
	}
	switch from {
	case gwv1.NamespacesFromSame, gwv1.NamespacesFromAll:
		if ns.Selector != nil {
			t.listenerProblem(l, ".allowedRoutes.namespaces.selector", "",
				fmt.Sprintf("only used with from: Selector; ignored with from: %s", from))
		}
	case gwv1.NamespacesFromSelector:
		if ns.Selector == nil {
			l.reject(t.listenerProblem(l, ".allowedRoutes.namespaces.selector", string(gwv1.ListenerReasonUnsupportedValue),
				"required with from: Selector"))
			return
		}
		if _, err := metav1.LabelSelectorAsSelector(ns.Selector); err != nil {
			l.reject(t.listenerProblem(l, ".allowedRoutes.namespaces.selector", string(gwv1.ListenerReasonUnsupportedValue),
				fmt.Sprintf("invalid label selector: %v", err)))
		}
	default:
		l.reject(t.listenerProblem(l, ".allowedRoutes.namespaces.from", string(gwv1.ListenerReasonUnsupportedValue),
			fmt.Sprintf("%q is not supported, expected All, Same or Selector", from)))
	}
}

// listenerCertificates resolves the certificateRefs of an HTTPS listener. Refs that fail
// are reported and skipped; the listener serves with those that resolve.
func (t *translator) listenerCertificates(l *listenerState) {
	fromKind := KindGateway
	if l.set != nil {
		// ReferenceGrants for the parent Gateway do not extend to ListenerSets.
		fromKind = KindListenerSet
	}
	tlsCfg := l.spec.TLS
	if tlsCfg != nil && tlsCfg.Mode != nil && *tlsCfg.Mode != gwv1.TLSModeTerminate {
		l.reject(t.listenerProblem(l, ".tls.mode", string(gwv1.ListenerReasonUnsupportedValue),
			fmt.Sprintf("mode %q is not supported for HTTPS, expected Terminate", *tlsCfg.Mode)))
		return
	}
	if tlsCfg == nil || len(tlsCfg.CertificateRefs) == 0 {
		l.unresolved = t.listenerProblem(l, ".tls.certificateRefs", string(gwv1.ListenerReasonInvalidCertificateRef),
			"an HTTPS listener needs at least one certificate")
		return
	}
	if len(tlsCfg.Options) > 0 {
		t.listenerProblem(l, ".tls.options", "", "no options are supported; ignored")
	}
	for i, ref := range tlsCfg.CertificateRefs {
		field := fmt.Sprintf(".tls.certificateRefs[%d]", i)
		cert, reason, msg := t.resolveCertificate(fromKind, l.namespace(), ref)
		if reason != "" {
			c := t.listenerProblem(l, field, reason, msg)
			if l.unresolved == nil {
				l.unresolved = c
			}
			continue
		}
		l.certs = append(l.certs, cert)
	}
}

// resolveCertificate finds and checks the Secret of one certificateRef of a listener of
// a fromKind (Gateway or ListenerSet) in namespace fromNs. On failure it returns the
// listener condition reason and a message.
func (t *translator) resolveCertificate(fromKind, fromNs string, ref gwv1.SecretObjectReference) (ir.Certificate, string, string) {
	group, kind := "", KindSecret
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	invalid := string(gwv1.ListenerReasonInvalidCertificateRef)
	if group != "" || kind != KindSecret {
		return ir.Certificate{}, invalid, fmt.Sprintf("kind %s is not supported, expected Secret", groupKind(group, kind))
	}
	ns := fromNs
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	name := string(ref.Name)
	if !t.refAllowed(gwv1.GroupName, fromKind, fromNs, "", KindSecret, ns, name) {
		return ir.Certificate{}, string(gwv1.ListenerReasonRefNotPermitted),
			fmt.Sprintf("secret %s/%s is in another namespace and no ReferenceGrant there allows it", ns, name)
	}
	s := t.secrets[types.NamespacedName{Namespace: ns, Name: name}]
	if s == nil {
		return ir.Certificate{}, invalid, fmt.Sprintf("secret %s/%s not found", ns, name)
	}
	if s.Type != corev1.SecretTypeTLS {
		typ := s.Type
		if typ == "" {
			typ = corev1.SecretTypeOpaque // what the API server would have defaulted
		}
		return ir.Certificate{}, invalid, fmt.Sprintf("secret %s/%s has type %s, expected %s", ns, name, typ, corev1.SecretTypeTLS)
	}
	crt, keyPEM := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if _, err := tls.X509KeyPair(crt, keyPEM); err != nil {
		return ir.Certificate{}, invalid, fmt.Sprintf("secret %s/%s does not hold a valid tls.crt and tls.key: %v", ns, name, err)
	}
	return ir.Certificate{Name: nn(ns, name), CertPEM: crt, KeyPEM: keyPEM}, "", ""
}

// settleConflicts marks listeners that cannot share their port. Within one Gateway, every
// listener of a conflict is marked, as the spec's examples do. Across Gateways whose
// listeners merge into one socket (same address and port), the oldest Gateway keeps the
// port or hostname and the younger one's listener is marked, so adding a Gateway never
// breaks a serving one. Gateways with addresses of their own share no socket.
func (t *translator) settleConflicts() {
	type claim struct {
		protocol ir.Protocol
		owner    *listenerState
		hosts    map[string]*listenerState
	}
	claims := map[ir.PortKey]*claim{}
	for _, gs := range t.ourGateways {
		if gs.invalid != nil || gs.noAddress != nil {
			continue
		}
		t.conflictsWithin(gs)
		t.conflictsWithSets(gs)
		for _, l := range gs.allListeners() {
			if l.notAccepted != nil || l.conflicted != nil {
				continue
			}
			for _, addr := range gs.bindAddresses() {
				k := ir.PortKey{Address: addr, Number: l.spec.Port}
				c := claims[k]
				if c == nil {
					c = &claim{protocol: l.protocol, owner: l, hosts: map[string]*listenerState{}}
					claims[k] = c
				}
				if c.protocol != l.protocol {
					l.conflicted = t.listenerProblem(l, ".protocol", string(gwv1.ListenerReasonProtocolConflict),
						fmt.Sprintf("port %d already serves %s for listener %s", l.spec.Port, c.protocol, c.owner.name))
					break
				}
				if other := c.hosts[l.hostname]; other != nil && other.gw != l.gw {
					l.conflicted = t.listenerProblem(l, ".hostname", string(gwv1.ListenerReasonHostnameConflict),
						fmt.Sprintf("port %d already serves hostname %q for listener %s", l.spec.Port, displayHost(l.hostname), other.name))
					break
				}
				c.hosts[l.hostname] = l
			}
		}
	}
}

// conflictsWithin marks the listeners of one Gateway that share a port with another
// protocol, or a port, protocol and hostname.
func (t *translator) conflictsWithin(gs *gatewayState) {
	protocols := map[gwv1.PortNumber]map[ir.Protocol]bool{}
	hosts := map[string]int{}
	hostKey := func(l *listenerState) string {
		return fmt.Sprintf("%d %s %s", l.spec.Port, l.protocol, l.hostname)
	}
	for _, l := range gs.listeners {
		if l.notAccepted != nil {
			continue
		}
		if protocols[l.spec.Port] == nil {
			protocols[l.spec.Port] = map[ir.Protocol]bool{}
		}
		protocols[l.spec.Port][l.protocol] = true
		hosts[hostKey(l)]++
	}
	// Walk the listeners in order, not the maps, so problems come out in a stable order.
	for _, l := range gs.listeners {
		if l.notAccepted != nil {
			continue
		}
		switch {
		case len(protocols[l.spec.Port]) > 1:
			l.conflicted = t.listenerProblem(l, ".protocol", string(gwv1.ListenerReasonProtocolConflict),
				fmt.Sprintf("port %d is used by listeners of this Gateway with different protocols", l.spec.Port))
		case hosts[hostKey(l)] > 1:
			l.conflicted = t.listenerProblem(l, ".hostname", string(gwv1.ListenerReasonHostnameConflict),
				fmt.Sprintf("port %d and hostname %q are used by several listeners of this Gateway", l.spec.Port, displayHost(l.hostname)))
		}
	}
}

// displayHost shows the empty hostname as "*" (any host) in messages.
func displayHost(h string) string {
	if h == "" {
		return "*"
	}
	return h
}

// groupKind formats a kind with its group, leaving out the core group.
func groupKind(group, kind string) string {
	if group == "" {
		return kind
	}
	return group + "/" + kind
}

func ptr[T any](v T) *T { return &v }
