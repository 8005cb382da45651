package translate

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// condition builds a condition; a nil failure means status True with okReason and okMsg.
// LastTransitionTime stays zero: Translate has no clock, and the status writer keeps the
// previous time when status and reason are unchanged.
func condition(typ string, gen int64, failure *condState, okReason, okMsg string) metav1.Condition {
	c := metav1.Condition{Type: typ, ObservedGeneration: gen, Status: metav1.ConditionTrue, Reason: okReason, Message: okMsg}
	if failure != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, failure.reason, failure.msg
	}
	return c
}

func (t *translator) writeGatewayStatuses() {
	for _, gs := range t.ourGateways {
		g := gs.gw
		st := &gwv1.GatewayStatus{}
		var invalid []string
		ready := 0
		for _, l := range gs.listeners {
			st.Listeners = append(st.Listeners, t.listenerStatus(gs, l))
			if l.notAccepted != nil || l.conflicted != nil {
				invalid = append(invalid, string(l.spec.Name))
			}
			if gs.invalid == nil && l.ready() {
				ready++
			}
		}
		accepted := gs.invalid
		acceptedReason, acceptedMsg := string(gwv1.GatewayReasonAccepted), "Gateway accepted"
		switch {
		case accepted != nil:
		case len(gs.listeners) > 0 && len(invalid) == len(gs.listeners):
			accepted = &condState{reason: string(gwv1.GatewayReasonListenersNotValid), msg: "no listener is valid"}
		case len(invalid) > 0:
			// The spec allows ListenersNotValid with status True: the Gateway serves its
			// other listeners.
			acceptedReason = string(gwv1.GatewayReasonListenersNotValid)
			acceptedMsg = "invalid listeners: " + strings.Join(invalid, ", ")
		}
		var programmed *condState
		switch {
		case gs.noAddress != nil && gs.invalid == nil:
			programmed = gs.noAddress
		case ready == 0:
			programmed = &condState{reason: string(gwv1.GatewayReasonInvalid), msg: "no listener can be served"}
		}
		st.Conditions = []metav1.Condition{
			condition(string(gwv1.GatewayConditionAccepted), g.Generation, accepted, acceptedReason, acceptedMsg),
			condition(string(gwv1.GatewayConditionProgrammed), g.Generation, programmed,
				string(gwv1.GatewayReasonProgrammed), fmt.Sprintf("%d listener(s) served", ready)),
			condition(string(gwv1.GatewayConditionResolvedRefs), g.Generation, gatewayUnresolved(gs),
				string(gwv1.GatewayReasonResolvedRefs), "All references resolved"),
		}
		if gs.insecureFrontend != "" {
			// Set while any frontend validation lets in clients without a valid
			// certificate; the status writer drops it once none does.
			st.Conditions = append(st.Conditions, metav1.Condition{
				Type: string(gwv1.GatewayConditionInsecureFrontendValidationMode), ObservedGeneration: g.Generation,
				Status: metav1.ConditionTrue, Reason: string(gwv1.GatewayReasonConfigurationChanged),
				Message: gs.insecureFrontend + " is AllowInsecureFallback: clients without a valid certificate are let in",
			})
		}
		st.Addresses = t.statusAddresses(gs)
		st.AttachedListenerSets = attachedListenerSets(gs)
		t.result.Gateways[gs.key] = st
	}
}

// gatewayUnresolved is why ResolvedRefs of Gateway gs is False, nil when True: its own
// references (spec.tls.backend) first, then a summary of its listeners'.
func gatewayUnresolved(gs *gatewayState) *condState {
	if gs.backendCertBad != nil {
		return gs.backendCertBad
	}
	var names []string
	for _, l := range gs.listeners {
		if l.unresolved != nil {
			names = append(names, string(l.spec.Name))
		}
	}
	if len(names) == 0 {
		return nil
	}
	return &condState{reason: string(gwv1.GatewayReasonListenersNotResolved),
		msg: "listeners with unresolved references: " + strings.Join(names, ", ")}
}

func (t *translator) listenerStatus(gs *gatewayState, l *listenerState) gwv1.ListenerStatus {
	gen := gs.gw.Generation
	kinds := l.supportedKinds
	if kinds == nil {
		kinds = []gwv1.RouteGroupKind{}
	}
	notProgrammed := (*condState)(nil)
	switch {
	case gs.invalid != nil:
		notProgrammed = &condState{reason: string(gwv1.ListenerReasonInvalid), msg: "the Gateway is not accepted"}
	case l.set != nil && l.conflicted != nil:
		// A ListenerSet's listener says which conflict keeps it off, whatever else is
		// wrong with it: the conformance tests of ListenerSets expect the conflict.
		notProgrammed = l.conflicted
	case l.notAccepted != nil:
		notProgrammed = &condState{reason: string(gwv1.ListenerReasonInvalid), msg: l.notAccepted.msg}
	case l.conflicted != nil:
		notProgrammed = &condState{reason: string(gwv1.ListenerReasonInvalid), msg: l.conflicted.msg}
	case gs.noAddress != nil:
		notProgrammed = &condState{reason: string(gwv1.ListenerReasonPending), msg: "the Gateway has no address: " + gs.noAddress.msg}
	case !l.ready():
		notProgrammed = &condState{reason: string(gwv1.ListenerReasonInvalid), msg: "no valid certificate"}
	}
	accepted := l.notAccepted
	if l.conflicted != nil && (accepted == nil || l.set != nil) {
		// A conflicted listener gets no data plane configuration, so it is not accepted.
		accepted = l.conflicted
	}
	conflicted := metav1.Condition{
		Type: string(gwv1.ListenerConditionConflicted), ObservedGeneration: gen,
		Status: metav1.ConditionFalse, Reason: string(gwv1.ListenerReasonNoConflicts), Message: "No conflicts",
	}
	if l.conflicted != nil {
		conflicted.Status, conflicted.Reason, conflicted.Message = metav1.ConditionTrue, l.conflicted.reason, l.conflicted.msg
	}
	return gwv1.ListenerStatus{
		Name:           l.spec.Name,
		SupportedKinds: kinds,
		AttachedRoutes: l.attachedRoutes,
		Conditions: []metav1.Condition{
			condition(string(gwv1.ListenerConditionAccepted), gen, accepted, string(gwv1.ListenerReasonAccepted), "Listener accepted"),
			condition(string(gwv1.ListenerConditionProgrammed), gen, notProgrammed, string(gwv1.ListenerReasonProgrammed), "Listener served"),
			condition(string(gwv1.ListenerConditionResolvedRefs), gen, l.unresolved, string(gwv1.ListenerReasonResolvedRefs), "All references resolved"),
			conflicted,
		},
	}
}

func (t *translator) writeRouteStatuses() {
	for _, rs := range t.routeStates {
		if len(rs.parents) == 0 {
			continue
		}
		gen := rs.route.Generation
		st := gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{}}
		for _, ps := range rs.parents {
			conds := []metav1.Condition{
				condition(string(gwv1.RouteConditionAccepted), gen, ps.accepted, string(gwv1.RouteReasonAccepted), "Route accepted"),
				condition(string(gwv1.RouteConditionResolvedRefs), gen, rs.unresolved, string(gwv1.RouteReasonResolvedRefs), "All references resolved"),
			}
			if ps.accepted == nil && rs.invalidRule != nil {
				conds = append(conds, metav1.Condition{
					Type: string(gwv1.RouteConditionPartiallyInvalid), ObservedGeneration: gen,
					Status: metav1.ConditionTrue, Reason: rs.invalidRule.reason,
					Message: "invalid rules are not served: " + rs.invalidRule.msg,
				})
			}
			st.Parents = append(st.Parents, gwv1.RouteParentStatus{
				ParentRef:      rs.route.Spec.ParentRefs[ps.index],
				ControllerName: gwv1.GatewayController(t.opts.ControllerName),
				Conditions:     conds,
			})
		}
		if rs.kind == KindGRPCRoute {
			t.result.GRPCRoutes[rs.key] = &gwv1.GRPCRouteStatus{RouteStatus: st}
		} else {
			t.result.HTTPRoutes[rs.key] = &gwv1.HTTPRouteStatus{RouteStatus: st}
		}
	}
}

func (t *translator) writePolicyStatuses() {
	for _, ps := range t.policies {
		gen := ps.p.Generation
		st := &gwv1.PolicyStatus{Ancestors: []gwv1.PolicyAncestorStatus{}}
		index := map[string]int{}
		for _, ts := range ps.targets {
			if ts.foreign {
				continue
			}
			failure := ps.invalid
			if failure == nil {
				failure = ts.failed
			}
			if failure == nil && ts.overrode != nil {
				failure = &condState{reason: string(gwv1.PolicyReasonConflicted),
					msg: fmt.Sprintf("policy %s targets the same %s and takes precedence", ts.overrode.key, describeTarget(ps, ts))}
			}
			cond := condition(string(gwv1.PolicyConditionAccepted), gen, failure, string(gwv1.PolicyReasonAccepted), "Policy accepted")
			for _, ref := range t.ancestors(ps, ts) {
				k := fmt.Sprintf("%v/%v/%v/%v/%v", deref(ref.Group), deref(ref.Kind), deref(ref.Namespace), ref.Name, deref(ref.SectionName))
				if i, ok := index[k]; ok {
					// Two targets with one ancestor: report a failure over a success.
					if failure != nil && st.Ancestors[i].Conditions[0].Status == metav1.ConditionTrue {
						st.Ancestors[i].Conditions[0] = cond
					}
					continue
				}
				index[k] = len(st.Ancestors)
				st.Ancestors = append(st.Ancestors, gwv1.PolicyAncestorStatus{
					AncestorRef:    ref,
					ControllerName: gwv1.GatewayController(t.opts.ControllerName),
					Conditions:     []metav1.Condition{cond},
				})
			}
		}
		t.result.Policies[ps.key] = st
	}
}

// ancestors are the objects a target's status is reported against, per policy
// attachment: the Gateway (and listener) itself, or the Gateways an HTTPRoute is attached
// to. A target that names nothing served is reported against itself.
func (t *translator) ancestors(ps *policyState, ts *targetState) []gwv1.ParentReference {
	ref := ps.p.Spec.TargetRefs[ts.index]
	self := gwv1.ParentReference{
		Group:     ptr(ref.Group),
		Kind:      ptr(ref.Kind),
		Namespace: ptr(gwv1.Namespace(ps.key.Namespace)),
		Name:      ref.Name,
	}
	if ts.route == nil {
		if ref.Kind == KindGateway {
			self.SectionName = ref.SectionName
		}
		return []gwv1.ParentReference{self}
	}
	var out []gwv1.ParentReference
	for _, p := range ts.route.parents {
		r := p.ref
		out = append(out, gwv1.ParentReference{Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, SectionName: r.SectionName})
	}
	if len(out) == 0 {
		if t.attachedElsewhere(ts.route) {
			return nil
		}
		return []gwv1.ParentReference{self}
	}
	return out
}

// attachedElsewhere reports whether a route that no served Gateway accepts names a
// Gateway that exists but is someone else's: whoever serves it reports on the policy.
func (t *translator) attachedElsewhere(rs *routeState) bool {
	for _, ref := range rs.route.Spec.ParentRefs {
		if (ref.Group != nil && *ref.Group != gwv1.GroupName) || (ref.Kind != nil && *ref.Kind != KindGateway) {
			continue
		}
		ns := rs.key.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		k := types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
		if t.gateways[k] != nil && t.gwByName[k] == nil {
			return true
		}
	}
	return false
}

func describeTarget(ps *policyState, ts *targetState) string {
	ref := ps.p.Spec.TargetRefs[ts.index]
	s := fmt.Sprintf("%s %s/%s", ref.Kind, ps.key.Namespace, ref.Name)
	if ts.section != "" {
		s += " section " + ts.section
	}
	return s + " in phase " + string(ps.phase)
}

func deref[T any](p *T) any {
	if p == nil {
		return ""
	}
	return *p
}
