package translate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// refError is why a backendRef did not resolve: a RouteConditionReason and a message.
type refError struct {
	reason, msg string
}

func (e *refError) Error() string { return e.msg }

// referrer is the object holding a backendRef, for ReferenceGrant checks.
type referrer struct {
	group, kind, namespace string
}

// resolveBackendRef resolves a reference to a core Service (the default kind) or a Sluice
// Backend. Each call returns a fresh *ir.Backend the caller may keep.
func (t *translator) resolveBackendRef(from referrer, ref gwv1.BackendObjectReference) (*ir.Backend, *refError) {
	group, kind := "", KindService
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := from.namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	name := string(ref.Name)
	switch {
	case group == "" && kind == KindService:
	case group == v1alpha1.Group && kind == KindBackend:
	default:
		return nil, &refError{string(gwv1.RouteReasonInvalidKind),
			fmt.Sprintf("kind %s is not supported, expected Service or %s/Backend", groupKind(group, kind), v1alpha1.Group)}
	}
	if !t.refAllowed(from.group, from.kind, from.namespace, group, kind, ns, name) {
		return nil, &refError{string(gwv1.RouteReasonRefNotPermitted),
			fmt.Sprintf("%s %s/%s is in another namespace and no ReferenceGrant there allows it", kind, ns, name)}
	}
	if kind == KindService {
		return t.resolveService(ns, name, ref.Port)
	}
	return t.resolveBackend(ns, name, ref.Port)
}

// resolveService resolves Service ns/name at port from its EndpointSlices: the ready
// endpoints of the slice port with the same name as the Service port.
func (t *translator) resolveService(ns, name string, port *gwv1.PortNumber) (*ir.Backend, *refError) {
	if port == nil {
		return nil, &refError{string(gwv1.RouteReasonUnsupportedValue), "port is required for a Service"}
	}
	svc := t.services[types.NamespacedName{Namespace: ns, Name: name}]
	if svc == nil {
		return nil, &refError{string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("service %s/%s not found", ns, name)}
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == *port {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil {
		return nil, &refError{string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("service %s/%s has no port %d", ns, name, *port)}
	}
	b := &ir.Backend{Name: fmt.Sprintf("service/%s/%s:%d", ns, name, *port), Endpoints: []ir.Endpoint{}}
	appProtocol := ""
	if sp.AppProtocol != nil {
		appProtocol = *sp.AppProtocol
	}
	// IANA service names ("http", "https") are case-insensitive; the kubernetes.io/
	// prefixed names are not.
	wantTLS := false
	switch {
	case appProtocol == "" || strings.EqualFold(appProtocol, "http") || appProtocol == "kubernetes.io/ws":
		b.Protocol = ir.UpstreamHTTP1
	case appProtocol == string(v1alpha1.AppProtocolH2C) || strings.EqualFold(appProtocol, string(v1alpha1.AppProtocolGRPC)):
		b.Protocol = ir.UpstreamH2C
	case strings.EqualFold(appProtocol, "https") || appProtocol == "kubernetes.io/wss":
		// TLS, verified as a BackendTLSPolicy says; there must be one.
		b.Protocol, wantTLS = ir.UpstreamHTTP1, true
	default:
		return nil, &refError{string(gwv1.RouteReasonUnsupportedProtocol),
			fmt.Sprintf("service %s/%s port %d has appProtocol %q, expected http, https, kubernetes.io/h2c, kubernetes.io/ws, kubernetes.io/wss or grpc", ns, name, *port, appProtocol)}
	}
	if wantTLS && t.backendTLSFor(ns, name, sp) == nil {
		return nil, &refError{string(gwv1.RouteReasonUnsupportedProtocol),
			fmt.Sprintf("service %s/%s port %d has appProtocol %q (TLS) but no BackendTLSPolicy targets it to say how to verify the backend", ns, name, *port, appProtocol)}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		b.Endpoints = append(b.Endpoints, ir.Endpoint{Host: svc.Spec.ExternalName, Port: *port})
		t.applyBackendTLS(b, ns, name, sp)
		return b, nil
	}
	seen := map[ir.Endpoint]bool{}
	for _, slice := range t.slices[types.NamespacedName{Namespace: ns, Name: name}] {
		target := slicePort(slice, sp.Name)
		if target == 0 {
			continue
		}
		for _, ep := range slice.Endpoints {
			// A nil ready condition means ready, per the EndpointSlice API.
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				e := ir.Endpoint{Host: addr, Port: target}
				if !seen[e] {
					seen[e] = true
					b.Endpoints = append(b.Endpoints, e)
				}
			}
		}
	}
	sortEndpoints(b.Endpoints)
	t.applyBackendTLS(b, ns, name, sp)
	return b, nil
}

// slicePort is the port number of the slice port named name, or 0.
func slicePort(s *discoveryv1.EndpointSlice, name string) int32 {
	for _, p := range s.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil {
			return *p.Port
		}
	}
	return 0
}

func sortEndpoints(eps []ir.Endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].Host != eps[j].Host {
			return eps[i].Host < eps[j].Host
		}
		return eps[i].Port < eps[j].Port
	})
}

// resolveBackend resolves Sluice Backend ns/name. With a port, only the endpoints on that
// port are used.
func (t *translator) resolveBackend(ns, name string, port *gwv1.PortNumber) (*ir.Backend, *refError) {
	k := types.NamespacedName{Namespace: ns, Name: name}
	obj := t.backends[k]
	if obj == nil {
		return nil, &refError{string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("backend %s/%s not found", ns, name)}
	}
	tmpl, err := t.validBackend(obj)
	if err != nil {
		return nil, err
	}
	b := *tmpl
	b.Endpoints = append([]ir.Endpoint(nil), tmpl.Endpoints...)
	if tmpl.TLS != nil {
		tlsCopy := *tmpl.TLS
		b.TLS = &tlsCopy
	}
	if port != nil {
		b.Name += ":" + strconv.Itoa(int(*port))
		b.Endpoints = b.Endpoints[:0]
		for _, e := range tmpl.Endpoints {
			if e.Port == *port {
				b.Endpoints = append(b.Endpoints, e)
			}
		}
		if len(b.Endpoints) == 0 {
			return nil, &refError{string(gwv1.RouteReasonBackendNotFound),
				fmt.Sprintf("backend %s/%s has no endpoint on port %d", ns, name, *port)}
		}
	}
	return &b, nil
}

// validBackend checks a Backend once, reporting its problems against the Backend itself,
// and returns its IR form, or why references to it fail.
func (t *translator) validBackend(obj *v1alpha1.Backend) (*ir.Backend, *refError) {
	if t.backendCache == nil {
		t.backendCache = map[types.NamespacedName]backendEntry{}
	}
	k := key(obj)
	if e, ok := t.backendCache[k]; ok {
		return e.b, e.err
	}
	b, msgs := t.compileBackend(obj)
	var err *refError
	if len(msgs) > 0 {
		b = nil
		err = &refError{string(gwv1.RouteReasonBackendNotFound),
			fmt.Sprintf("backend %s/%s is invalid: %s", obj.Namespace, obj.Name, msgs[0])}
	}
	t.backendCache[k] = backendEntry{b, err}
	return b, err
}

// backendEntry is the memoised outcome of validBackend.
type backendEntry struct {
	b   *ir.Backend
	err *refError
}

// compileBackend turns a Backend into its IR form, returning a message per invalid field.
func (t *translator) compileBackend(obj *v1alpha1.Backend) (*ir.Backend, []string) {
	var msgs []string
	bad := func(field, msg string) {
		msgs = append(msgs, t.problem(KindBackend, obj.Namespace, obj.Name, field, msg))
	}
	b := &ir.Backend{Name: fmt.Sprintf("backend/%s/%s", obj.Namespace, obj.Name), Endpoints: []ir.Endpoint{}}
	if len(obj.Spec.Endpoints) == 0 {
		bad("spec.endpoints", "at least one endpoint is required")
	}
	for i, e := range obj.Spec.Endpoints {
		if e.Host == "" {
			bad(fmt.Sprintf("spec.endpoints[%d].host", i), "required")
		}
		if e.Port < 1 || e.Port > 65535 {
			bad(fmt.Sprintf("spec.endpoints[%d].port", i), fmt.Sprintf("port %d is out of range 1-65535", e.Port))
		}
		b.Endpoints = append(b.Endpoints, ir.Endpoint{Host: e.Host, Port: e.Port})
	}
	switch obj.Spec.AppProtocol {
	case "", v1alpha1.AppProtocolHTTP:
		b.Protocol = ir.UpstreamHTTP1
	case v1alpha1.AppProtocolH2C, v1alpha1.AppProtocolGRPC:
		b.Protocol = ir.UpstreamH2C
	case v1alpha1.AppProtocolHTTPS:
		b.Protocol = ir.UpstreamHTTPS
		b.TLS = t.backendTLS(obj, bad)
	default:
		bad("spec.appProtocol", fmt.Sprintf("%q is not supported, expected http, kubernetes.io/h2c, grpc or https", obj.Spec.AppProtocol))
	}
	if obj.Spec.TLS != nil && b.Protocol != ir.UpstreamHTTPS && b.Protocol != "" {
		bad("spec.tls", "only used with appProtocol https")
	}
	return b, msgs
}

// backendTLS resolves the TLS settings of an https Backend.
func (t *translator) backendTLS(obj *v1alpha1.Backend, bad func(field, msg string)) *ir.BackendTLS {
	out := &ir.BackendTLS{}
	spec := obj.Spec.TLS
	if spec == nil {
		return out
	}
	out.SNI = spec.SNI
	out.InsecureSkipVerify = spec.InsecureSkipVerify
	for i, ref := range spec.CACertificateRefs {
		field := fmt.Sprintf("spec.tls.caCertificateRefs[%d]", i)
		kind := ref.Kind
		if kind == "" {
			kind = KindSecret
		}
		ca, _, msg := t.caBundle(obj.Namespace, "", kind, ref.Name)
		if msg != "" {
			bad(field, msg)
			continue
		}
		out.CAPEM = append(out.CAPEM, ca...)
	}
	if ref := spec.ClientCertificateRef; ref != nil {
		field := "spec.tls.clientCertificateRef"
		s := t.secrets[types.NamespacedName{Namespace: obj.Namespace, Name: ref.Name}]
		switch {
		case ref.Kind != "" && ref.Kind != KindSecret:
			bad(field+".kind", fmt.Sprintf("kind %q is not supported, expected Secret", ref.Kind))
		case s == nil:
			bad(field, fmt.Sprintf("secret %s/%s not found", obj.Namespace, ref.Name))
		case len(s.Data[corev1.TLSCertKey]) == 0 || len(s.Data[corev1.TLSPrivateKeyKey]) == 0:
			bad(field, fmt.Sprintf("secret %s/%s has no tls.crt and tls.key", obj.Namespace, ref.Name))
		default:
			out.ClientCertificate = nn(obj.Namespace, ref.Name)
			out.ClientCertPEM = s.Data[corev1.TLSCertKey]
			out.ClientKeyPEM = s.Data[corev1.TLSPrivateKeyKey]
		}
	}
	return out
}
