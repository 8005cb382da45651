package translate

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// listenerSetState is a ListenerSet whose parent Gateway is served, and what
// translation found out about it. Its listeners join the parent's: they are served on
// the parent's addresses, after the parent's own listeners in precedence.
type listenerSetState struct {
	ls  *gwv1.ListenerSet
	key types.NamespacedName
	// gw is the parent Gateway; nil when it does not exist (file mode only).
	gw *gatewayState
	// notAttached, when set, is why the ListenerSet is not attached to its parent
	// (Accepted and Programmed False with its reason): its listeners are not served.
	notAttached *condState
	listeners   []*listenerState
}

// valid reports whether listener l of a ListenerSet can be served as configured: the
// ListenerSet is accepted when at least one of its listeners is.
func (l *listenerState) valid() bool {
	if l.notAccepted != nil || l.conflicted != nil {
		return false
	}
	return l.protocol != ir.ProtocolHTTPS || len(l.certs) > 0
}

// accepted reports whether the ListenerSet is attached to its Gateway and has a valid
// listener: what Gateway status.attachedListenerSets counts.
func (s *listenerSetState) accepted() bool {
	if s.notAttached != nil {
		return false
	}
	for _, l := range s.listeners {
		if l.valid() {
			return true
		}
	}
	return false
}

// translateListenerSets attaches the ListenerSets of served Gateways that allow them,
// oldest first (ties by namespace/name): the order of precedence of their listeners.
func (t *translator) translateListenerSets() {
	sets := append([]*gwv1.ListenerSet(nil), t.res.ListenerSets...)
	sort.Slice(sets, func(i, j int) bool { return olderFirst(sets[i], sets[j]) })
	for _, ls := range sets {
		s := &listenerSetState{ls: ls, key: key(ls)}
		ref := ls.Spec.ParentRef
		group, kind, ns := gwv1.GroupName, KindGateway, ls.Namespace
		if ref.Group != nil {
			group = string(*ref.Group)
		}
		if ref.Kind != nil {
			kind = string(*ref.Kind)
		}
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		gwKey := types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
		if group != gwv1.GroupName || kind != KindGateway {
			// Only Gateways have ListenerSets; nobody else would report this in file mode.
			if !t.opts.AllGatewayClasses {
				continue
			}
			s.notAttached = t.setProblem(s, "spec.parentRef", string(gwv1.ListenerSetReasonInvalid),
				fmt.Sprintf("parent kind %s is not supported, expected %s/Gateway", groupKind(group, kind), gwv1.GroupName))
			t.addListenerSet(s)
			continue
		}
		gs := t.gwByName[gwKey]
		if gs == nil {
			// Another controller's Gateway: its ListenerSets are not ours to report on.
			if t.gateways[gwKey] != nil || !t.opts.AllGatewayClasses {
				continue
			}
			s.notAttached = t.setProblem(s, "spec.parentRef", string(gwv1.ListenerSetReasonInvalid),
				fmt.Sprintf("gateway %s not found", gwKey))
			t.addListenerSet(s)
			continue
		}
		s.gw = gs
		t.addListenerSet(s)
		switch {
		case gs.invalid != nil:
			s.notAttached = &condState{reason: string(gwv1.ListenerSetReasonParentNotAccepted),
				msg: fmt.Sprintf("gateway %s is not accepted", gwKey)}
		case !t.allowsListenerSet(gs, ls.Namespace):
			s.notAttached = t.setProblem(s, "spec.parentRef", string(gwv1.ListenerSetReasonNotAllowed),
				fmt.Sprintf("gateway %s does not allow ListenerSets from namespace %s (see its spec.allowedListeners)", gwKey, ls.Namespace))
		default:
			gs.sets = append(gs.sets, s)
			t.validateSetListeners(s)
		}
	}
}

func (t *translator) addListenerSet(s *listenerSetState) {
	t.listenerSets = append(t.listenerSets, s)
	t.setByName[s.key] = s
}

// listenerSetExists reports whether ListenerSet k is among the input, served or not.
func (t *translator) listenerSetExists(k types.NamespacedName) bool {
	for _, ls := range t.res.ListenerSets {
		if key(ls) == k {
			return true
		}
	}
	return false
}

// setProblem records a problem on ListenerSet s and returns the failed condition.
func (t *translator) setProblem(s *listenerSetState, field, reason, msg string) *condState {
	return &condState{reason: reason, msg: t.problem(KindListenerSet, s.key.Namespace, s.key.Name, field, msg)}
}

// allowsListenerSet reports whether Gateway gs admits ListenerSets from namespace ns.
// Without spec.allowedListeners it admits none, as the API defaults to from: None.
func (t *translator) allowsListenerSet(gs *gatewayState, ns string) bool {
	al := gs.gw.Spec.AllowedListeners
	if al == nil || al.Namespaces == nil || al.Namespaces.From == nil {
		return false
	}
	switch *al.Namespaces.From {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return ns == gs.key.Namespace
	case gwv1.NamespacesFromSelector:
		if al.Namespaces.Selector == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(al.Namespaces.Selector)
		if err != nil {
			return false
		}
		return sel.Matches(labels.Set(t.namespaceLabels(ns)))
	}
	return false
}

// validateAllowedListeners reports a spec.allowedListeners of Gateway gs that admits no
// ListenerSet although it looks meant to: a Selector without a valid selector.
func (t *translator) validateAllowedListeners(gs *gatewayState) {
	al := gs.gw.Spec.AllowedListeners
	if al == nil || al.Namespaces == nil || al.Namespaces.From == nil {
		return
	}
	g := gs.gw
	field := "spec.allowedListeners.namespaces"
	switch from := *al.Namespaces.From; from {
	case gwv1.NamespacesFromAll, gwv1.NamespacesFromSame, gwv1.NamespacesFromNone:
	case gwv1.NamespacesFromSelector:
		if al.Namespaces.Selector == nil {
			t.problem(KindGateway, g.Namespace, g.Name, field+".selector", "required with from: Selector; no ListenerSet is allowed")
			return
		}
		if _, err := metav1.LabelSelectorAsSelector(al.Namespaces.Selector); err != nil {
			t.problem(KindGateway, g.Namespace, g.Name, field+".selector",
				fmt.Sprintf("invalid label selector: %v; no ListenerSet is allowed", err))
		}
	default:
		t.problem(KindGateway, g.Namespace, g.Name, field+".from",
			fmt.Sprintf("%q is not supported, expected All, Same, Selector or None; no ListenerSet is allowed", from))
	}
}

// validateSetListeners validates the listeners of ListenerSet s, attached to s.gw,
// like a Gateway's own.
func (t *translator) validateSetListeners(s *listenerSetState) {
	names := map[gwv1.SectionName]bool{}
	for i := range s.ls.Spec.Listeners {
		spec := gwv1.Listener(s.ls.Spec.Listeners[i])
		l := &listenerState{
			gw:    s.gw,
			set:   s,
			spec:  &spec,
			field: fmt.Sprintf("spec.listeners[%d]", i),
			name:  fmt.Sprintf("%s/%s/%s", s.key.Namespace, s.key.Name, spec.Name),
		}
		s.listeners = append(s.listeners, l)
		if names[spec.Name] {
			l.reject(t.listenerProblem(l, ".name", string(gwv1.ListenerReasonUnsupportedValue),
				fmt.Sprintf("listener name %q is used twice", spec.Name)))
		}
		names[spec.Name] = true
		t.validateListener(l)
		if l.protocol == ir.ProtocolHTTPS && s.gw.frontendDefault != nil {
			// The Gateway's spec.tls.frontend covers every HTTPS listener on its ports.
			applyListenerFrontendTLS(s.gw, l)
		}
	}
}

// conflictsWithSets marks the listeners of the ListenerSets of gs that conflict with a
// listener of higher precedence: the Gateway's own, then older ListenerSets'. Unlike
// within a Gateway, only the listener of lower precedence is marked, so a ListenerSet
// never takes a port or hostname from a listener already served. A listener with a
// protocol Sluice does not serve still conflicts on its port: that is the more useful
// thing to tell its owner.
func (t *translator) conflictsWithSets(gs *gatewayState) {
	if len(gs.sets) == 0 {
		return
	}
	ports := map[gwv1.PortNumber]*listenerState{} // the first listener on each port
	hosts := map[string]*listenerState{}          // by port, protocol and hostname
	hostKey := func(l *listenerState) string {
		return fmt.Sprintf("%d %s %s", l.spec.Port, l.spec.Protocol, l.hostname)
	}
	claim := func(l *listenerState) {
		if ports[l.spec.Port] == nil {
			ports[l.spec.Port] = l
		}
		hosts[hostKey(l)] = l
	}
	for _, l := range gs.listeners {
		if l.notAccepted == nil && l.conflicted == nil {
			claim(l)
		}
	}
	for _, s := range gs.sets {
		for _, l := range s.listeners {
			if first := ports[l.spec.Port]; first != nil && first.spec.Protocol != l.spec.Protocol {
				l.conflicted = t.listenerProblem(l, ".protocol", string(gwv1.ListenerReasonProtocolConflict),
					fmt.Sprintf("port %d already serves %s for listener %s", l.spec.Port, first.spec.Protocol, first.name))
				continue
			}
			if l.notAccepted != nil {
				continue
			}
			if other := hosts[hostKey(l)]; other != nil {
				l.conflicted = t.listenerProblem(l, ".hostname", string(gwv1.ListenerReasonHostnameConflict),
					fmt.Sprintf("port %d already serves hostname %q for listener %s", l.spec.Port, displayHost(l.hostname), other.name))
				continue
			}
			claim(l)
		}
	}
}

// writeListenerSetStatuses writes the status of every ListenerSet of a served Gateway.
func (t *translator) writeListenerSetStatuses() {
	for _, s := range t.listenerSets {
		gen := s.ls.Generation
		st := &gwv1.ListenerSetStatus{}
		var invalid []string
		ready := 0
		for _, l := range s.listeners {
			ls := t.listenerStatus(s.gw, l)
			st.Listeners = append(st.Listeners, gwv1.ListenerEntryStatus{
				Name: ls.Name, SupportedKinds: ls.SupportedKinds, AttachedRoutes: ls.AttachedRoutes, Conditions: ls.Conditions,
			})
			if !l.valid() {
				invalid = append(invalid, string(l.spec.Name))
			}
			if l.ready() {
				ready++
			}
		}
		accepted := s.notAttached
		acceptedReason, acceptedMsg := string(gwv1.ListenerSetReasonAccepted), "ListenerSet accepted"
		switch {
		case accepted != nil:
		case len(invalid) == len(s.listeners):
			accepted = &condState{reason: string(gwv1.ListenerSetReasonListenersNotValid), msg: "no listener is valid"}
		case len(invalid) > 0:
			// As for a Gateway: the ListenerSet serves its other listeners.
			acceptedReason = string(gwv1.ListenerSetReasonListenersNotValid)
			acceptedMsg = "invalid listeners: " + strings.Join(invalid, ", ")
		}
		programmed := accepted
		if programmed == nil && ready == 0 {
			// Valid listeners, none served: the Gateway has no address.
			programmed = &condState{reason: "ParentNotProgrammed", msg: "gateway " + s.gw.key.String() + " is not programmed"}
		}
		st.Conditions = []metav1.Condition{
			condition(string(gwv1.ListenerSetConditionAccepted), gen, accepted, acceptedReason, acceptedMsg),
			condition(string(gwv1.ListenerSetConditionProgrammed), gen, programmed,
				string(gwv1.ListenerSetReasonProgrammed), fmt.Sprintf("%d listener(s) served", ready)),
		}
		t.result.ListenerSets[s.key] = st
	}
}

// attachedListenerSets is Gateway gs's status.attachedListenerSets: the ListenerSets
// attached and accepted. It is left out (nil) for Gateways that allow no ListenerSets
// and have none, as before ListenerSets existed.
func attachedListenerSets(gs *gatewayState) *int32 {
	n := int32(0)
	for _, s := range gs.sets {
		if s.accepted() {
			n++
		}
	}
	if n == 0 && gs.gw.Spec.AllowedListeners == nil {
		return nil
	}
	return &n
}
