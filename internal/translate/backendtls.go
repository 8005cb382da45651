package translate

import (
	"encoding/pem"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// BackendTLSPolicy (gateway.networking.k8s.io/v1) makes Sluice speak TLS to the Services
// it targets, verifying them against the policy's CA bundle (or the system roots) and
// hostname or subject alternative names. It applies wherever the Service is a backend:
// HTTPRoute backendRefs and TrafficPolicy extProc backendRefs alike, so that a processor
// behind a Service is reached over TLS too.

// btlsState is one BackendTLSPolicy being translated.
type btlsState struct {
	p   *gwv1.BackendTLSPolicy
	key types.NamespacedName
	// invalid makes Accepted False (Invalid or NoValidCACertificate); unresolved makes
	// ResolvedRefs False. A policy that is invalid only because of its CA references
	// still applies, with a TLS configuration no server can pass: its Services answer
	// 5xx rather than fall back to plain text.
	invalid, unresolved *condState
	// conflicted is set per targetRefs index that lost to an older policy.
	conflicted map[int]*btlsState
	tls        *ir.BackendTLS
	// noCA marks a policy whose every CA reference is invalid: connections must fail.
	noCA bool
}

// btlsTarget is the attachment point of a BackendTLSPolicy: a Service, or one of its
// ports by name.
type btlsTarget struct {
	svc     types.NamespacedName
	section string
}

// translateBackendTLS validates every BackendTLSPolicy and settles which one applies to
// each Service (port), oldest first, before any backend is resolved.
func (t *translator) translateBackendTLS() {
	t.btls = map[btlsTarget]*btlsState{}
	for _, p := range t.res.BackendTLSPolicies {
		bs := &btlsState{p: p, key: key(p), conflicted: map[int]*btlsState{}}
		t.btlsStates = append(t.btlsStates, bs)
		t.validateBackendTLS(bs)
	}
	order := append([]*btlsState(nil), t.btlsStates...)
	sort.SliceStable(order, func(i, j int) bool { return olderFirst(order[i].p, order[j].p) })
	for _, bs := range order {
		if bs.invalid != nil && !bs.noCA {
			continue
		}
		for i, ref := range bs.p.Spec.TargetRefs {
			if ref.Group != "" || ref.Kind != KindService {
				continue
			}
			tg := btlsTarget{svc: types.NamespacedName{Namespace: bs.key.Namespace, Name: string(ref.Name)}}
			if ref.SectionName != nil {
				tg.section = string(*ref.SectionName)
			}
			if winner := t.btls[tg]; winner != nil {
				bs.conflicted[i] = winner
				continue
			}
			t.btls[tg] = bs
		}
	}
}

func (t *translator) validateBackendTLS(bs *btlsState) {
	p := bs.p
	bad := func(field, reason, msg string) *condState {
		return &condState{reason: reason, msg: t.problem(KindBackendTLSPolicy, bs.key.Namespace, bs.key.Name, field, msg)}
	}
	for i, ref := range p.Spec.TargetRefs {
		if ref.Group != "" || ref.Kind != KindService {
			bs.invalid = bad(fmt.Sprintf("spec.targetRefs[%d]", i), string(gwv1.PolicyReasonInvalid),
				fmt.Sprintf("target kind %s is not supported, expected Service", groupKind(string(ref.Group), string(ref.Kind))))
			return
		}
	}
	v := p.Spec.Validation
	out := &ir.BackendTLS{SNI: string(v.Hostname)}
	if v.Hostname == "" {
		bs.invalid = bad("spec.validation.hostname", string(gwv1.PolicyReasonInvalid), "required")
		return
	}
	for i, san := range v.SubjectAltNames {
		field := fmt.Sprintf("spec.validation.subjectAltNames[%d]", i)
		switch {
		case san.Type == gwv1.HostnameSubjectAltNameType && san.Hostname != "":
			out.SubjectAltDNSNames = append(out.SubjectAltDNSNames, string(san.Hostname))
		case san.Type == gwv1.URISubjectAltNameType && san.URI != "":
			out.SubjectAltURIs = append(out.SubjectAltURIs, string(san.URI))
		default:
			bs.invalid = bad(field, string(gwv1.PolicyReasonInvalid),
				fmt.Sprintf("type %q with its value is required, expected Hostname with hostname or URI with uri", san.Type))
			return
		}
	}
	switch {
	case len(v.CACertificateRefs) > 0 && v.WellKnownCACertificates != nil:
		bs.invalid = bad("spec.validation", string(gwv1.PolicyReasonInvalid),
			"caCertificateRefs and wellKnownCACertificates are mutually exclusive")
		return
	case v.WellKnownCACertificates != nil && *v.WellKnownCACertificates != gwv1.WellKnownCACertificatesSystem:
		bs.invalid = bad("spec.validation.wellKnownCACertificates", string(gwv1.PolicyReasonInvalid),
			fmt.Sprintf("%q is not supported, expected System", *v.WellKnownCACertificates))
		return
	case v.WellKnownCACertificates != nil:
		// The system roots: RootCAs stays nil.
	case len(v.CACertificateRefs) == 0:
		bs.invalid = bad("spec.validation", string(gwv1.PolicyReasonInvalid),
			"one of caCertificateRefs or wellKnownCACertificates is required")
		return
	}
	valid := 0
	for i, ref := range v.CACertificateRefs {
		field := fmt.Sprintf("spec.validation.caCertificateRefs[%d]", i)
		ca, reason, msg := t.caBundle(bs.key.Namespace, string(ref.Group), string(ref.Kind), string(ref.Name))
		if msg != "" {
			c := bad(field, reason, msg)
			if bs.unresolved == nil {
				bs.unresolved = c
			}
			continue
		}
		out.CAPEM = append(out.CAPEM, ca...)
		valid++
	}
	if len(v.CACertificateRefs) > 0 && valid == 0 {
		bs.noCA = true
		bs.invalid = &condState{reason: string(gwv1.BackendTLSPolicyReasonNoValidCACertificate), msg: bs.unresolved.msg}
	}
	bs.tls = out
}

// caBundle returns the PEM CA bundle in key ca.crt of ConfigMap (or Secret) ns/name, or
// a ResolvedRefs reason and message saying why it cannot be used.
func (t *translator) caBundle(ns, group, kind, name string) ([]byte, string, string) {
	var data []byte
	switch {
	case group == "" && kind == KindConfigMap:
		cm := t.configMaps[types.NamespacedName{Namespace: ns, Name: name}]
		if cm == nil {
			return nil, string(gwv1.BackendTLSPolicyReasonInvalidCACertificateRef), fmt.Sprintf("configmap %s/%s not found", ns, name)
		}
		data = []byte(cm.Data["ca.crt"])
		if len(data) == 0 {
			data = cm.BinaryData["ca.crt"]
		}
	case group == "" && kind == KindSecret:
		s := t.secrets[types.NamespacedName{Namespace: ns, Name: name}]
		if s == nil {
			return nil, string(gwv1.BackendTLSPolicyReasonInvalidCACertificateRef), fmt.Sprintf("secret %s/%s not found", ns, name)
		}
		data = s.Data["ca.crt"]
	default:
		return nil, string(gwv1.BackendTLSPolicyReasonInvalidKind),
			fmt.Sprintf("kind %s is not supported, expected ConfigMap or Secret", groupKind(group, kind))
	}
	if len(data) == 0 {
		return nil, string(gwv1.BackendTLSPolicyReasonInvalidCACertificateRef), fmt.Sprintf("%s %s/%s has no ca.crt", kind, ns, name)
	}
	if b, _ := pem.Decode(data); b == nil || b.Type != "CERTIFICATE" {
		return nil, string(gwv1.BackendTLSPolicyReasonInvalidCACertificateRef), fmt.Sprintf("%s %s/%s: ca.crt holds no PEM certificate", kind, ns, name)
	}
	return data, "", ""
}

// applyBackendTLS makes b, Service ns/name port sp, a TLS backend when a
// BackendTLSPolicy targets the port (by name) or the whole Service. A policy without a
// usable CA leaves b without endpoints, so requests to it fail with 5xx instead of going
// out unverified or in plain text.
func (t *translator) applyBackendTLS(b *ir.Backend, ns, name string, sp *corev1.ServicePort) {
	bs := t.backendTLSFor(ns, name, sp)
	if bs == nil {
		return
	}
	tlsCopy := *bs.tls
	b.Protocol = ir.UpstreamHTTPS
	b.TLS = &tlsCopy
	t.policyTLS[b] = true
	if bs.noCA {
		b.Endpoints = b.Endpoints[:0]
	}
}

// backendTLSFor returns the BackendTLSPolicy that applies to port sp of Service ns/name:
// the one naming the port's section, else the one for the whole Service, else nil.
func (t *translator) backendTLSFor(ns, name string, sp *corev1.ServicePort) *btlsState {
	svc := types.NamespacedName{Namespace: ns, Name: name}
	if bs := t.btls[btlsTarget{svc: svc, section: sp.Name}]; bs != nil {
		return bs
	}
	return t.btls[btlsTarget{svc: svc}]
}

// writeBackendTLSStatuses reports every BackendTLSPolicy against the served Gateways
// whose routes (or external processors) use a Service it targets. A policy no served
// Gateway uses gets no status from this translation.
func (t *translator) writeBackendTLSStatuses() {
	if len(t.btlsStates) == 0 {
		return
	}
	users := t.serviceUsers()
	for _, bs := range t.btlsStates {
		gen := bs.p.Generation
		st := &gwv1.PolicyStatus{Ancestors: []gwv1.PolicyAncestorStatus{}}
		seen := map[types.NamespacedName]bool{}
		var gws []types.NamespacedName
		for _, ref := range bs.p.Spec.TargetRefs {
			for _, g := range users[types.NamespacedName{Namespace: bs.key.Namespace, Name: string(ref.Name)}] {
				if !seen[g] {
					seen[g] = true
					gws = append(gws, g)
				}
			}
		}
		sort.Slice(gws, func(i, j int) bool { return gws[i].String() < gws[j].String() })
		accepted := bs.invalid
		if accepted == nil {
			for i := range bs.p.Spec.TargetRefs {
				if winner := bs.conflicted[i]; winner != nil {
					accepted = &condState{reason: string(gwv1.PolicyReasonConflicted),
						msg: fmt.Sprintf("spec.targetRefs[%d]: policy %s targets the same Service and takes precedence", i, winner.key)}
					break
				}
			}
		}
		conds := []metav1.Condition{
			condition(string(gwv1.PolicyConditionAccepted), gen, accepted, string(gwv1.PolicyReasonAccepted), "Policy accepted"),
			condition(string(gwv1.BackendTLSPolicyConditionResolvedRefs), gen, bs.unresolved, string(gwv1.BackendTLSPolicyReasonResolvedRefs), "All references resolved"),
		}
		for _, g := range gws {
			st.Ancestors = append(st.Ancestors, gwv1.PolicyAncestorStatus{
				AncestorRef: gwv1.ParentReference{Group: ptr(gwv1.Group(gwv1.GroupName)), Kind: ptr(gwv1.Kind(KindGateway)),
					Namespace: ptr(gwv1.Namespace(g.Namespace)), Name: gwv1.ObjectName(g.Name)},
				ControllerName: gwv1.GatewayController(t.opts.ControllerName),
				Conditions:     append([]metav1.Condition(nil), conds...),
			})
		}
		t.result.BackendTLSPolicies[bs.key] = st
	}
}

// serviceUsers maps each Service to the served Gateways that send to it: through an
// accepted route's backendRefs, or through an external processor attached to them.
func (t *translator) serviceUsers() map[types.NamespacedName][]types.NamespacedName {
	users := map[types.NamespacedName][]types.NamespacedName{}
	add := func(svc types.NamespacedName, gw types.NamespacedName) {
		for _, g := range users[svc] {
			if g == gw {
				return
			}
		}
		users[svc] = append(users[svc], gw)
	}
	serviceOf := func(ns string, ref gwv1.BackendObjectReference) (types.NamespacedName, bool) {
		if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != KindService) {
			return types.NamespacedName{}, false
		}
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		return types.NamespacedName{Namespace: ns, Name: string(ref.Name)}, true
	}
	for _, rs := range t.routeStates {
		var gws []types.NamespacedName
		for _, ps := range rs.parents {
			if ps.accepted == nil {
				gws = append(gws, types.NamespacedName{Namespace: string(*ps.ref.Namespace), Name: string(ps.ref.Name)})
			}
		}
		for _, rule := range rs.route.Spec.Rules {
			for _, br := range rule.BackendRefs {
				if svc, ok := serviceOf(rs.key.Namespace, br.BackendObjectReference); ok {
					for _, g := range gws {
						add(svc, g)
					}
				}
			}
		}
	}
	for _, ps := range t.policies {
		tr := ps.p.Spec.Traffic
		if tr == nil || tr.ExtProc == nil {
			continue
		}
		svc, ok := serviceOf(ps.key.Namespace, tr.ExtProc.BackendRef)
		if !ok {
			continue
		}
		for _, ts := range ps.targets {
			switch {
			case ts.gw != nil:
				add(svc, ts.gw.key)
			case ts.route != nil:
				for _, p := range ts.route.parents {
					if p.accepted == nil {
						add(svc, types.NamespacedName{Namespace: string(*p.ref.Namespace), Name: string(p.ref.Name)})
					}
				}
			}
		}
	}
	return users
}
