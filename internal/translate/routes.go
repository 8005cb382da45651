package translate

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// routeState is one HTTPRoute or GRPCRoute and what translation found out about it.
type routeState struct {
	// kind is KindHTTPRoute or KindGRPCRoute; route is the HTTPRoute, or the one a
	// GRPCRoute amounts to (see lowerGRPCRoute).
	kind  string
	route *gwv1.HTTPRoute
	// lowered are the problems lowerGRPCRoute found in the rules, and grpcRanks the
	// precedence of each valid match, by rule index.
	lowered   map[int][]ruleFailure
	grpcRanks map[int][]grpcRank
	key       types.NamespacedName
	hostnames []string
	// badHostnames, when set, keeps the route from attaching anywhere: serving it on
	// fewer hostnames than written could widen it to every host.
	badHostnames *condState
	rules        []*ruleState
	// invalidRule is the first rule that failed (UnsupportedValue, IncompatibleFilters).
	invalidRule *condState
	validRules  int
	// unresolved is the first backendRef that did not resolve.
	unresolved *condState
	parents    []*parentState
}

// parentState is the outcome of one parentRef of a route that names a served Gateway.
type parentState struct {
	ref      gwv1.ParentReference // defaulted: group, kind and namespace set
	index    int
	accepted *condState // nil when attached
}

// attachment is a route attached to a listener, and the hostnames it serves there.
type attachment struct {
	route     *routeState
	hostnames []string
}

// translateRoutes compiles every HTTPRoute's and GRPCRoute's rules and attaches it to
// the listeners its parentRefs select, oldest first: of an HTTPRoute and a GRPCRoute that
// claim one hostname on one listener, the older gets it.
func (t *translator) translateRoutes() {
	var states []*routeState
	for _, r := range t.res.HTTPRoutes {
		states = append(states, &routeState{kind: KindHTTPRoute, route: r, key: key(r)})
	}
	for _, g := range t.res.GRPCRoutes {
		h, lowered, ranks := lowerGRPCRoute(g)
		states = append(states, &routeState{kind: KindGRPCRoute, route: h, lowered: lowered, grpcRanks: ranks, key: key(g)})
	}
	sort.SliceStable(states, func(i, j int) bool { return olderFirst(states[i].route, states[j].route) })
	for _, rs := range states {
		r := rs.route
		t.routeStates = append(t.routeStates, rs)
		t.routeByName[routeRef{rs.kind, rs.key}] = rs
		t.routeHostnames(rs)
		t.compileRules(rs)
		for i := range r.Spec.ParentRefs {
			t.attachParent(rs, i)
		}
	}
}

// routeProblem records a problem on route rs and returns the failed condition.
func (t *translator) routeProblem(rs *routeState, field, reason, msg string) *condState {
	return &condState{reason: reason, msg: t.problem(rs.kind, rs.key.Namespace, rs.key.Name, field, msg)}
}

func (t *translator) routeHostnames(rs *routeState) {
	for i, h := range rs.route.Spec.Hostnames {
		if err := validateHostname(string(h), true); err != nil {
			c := t.routeProblem(rs, fmt.Sprintf("spec.hostnames[%d]", i), string(gwv1.RouteReasonUnsupportedValue), err.Error())
			if rs.badHostnames == nil {
				rs.badHostnames = c
			}
			continue
		}
		rs.hostnames = append(rs.hostnames, strings.ToLower(string(h)))
	}
}

// attachParent resolves parentRef i of rs and attaches the route to the listeners it
// selects that allow it and share a hostname with it.
func (t *translator) attachParent(rs *routeState, i int) {
	ref := rs.route.Spec.ParentRefs[i]
	field := fmt.Sprintf("spec.parentRefs[%d]", i)
	if ref.Group == nil {
		ref.Group = ptr(gwv1.Group(gwv1.GroupName))
	}
	if ref.Kind == nil {
		ref.Kind = ptr(gwv1.Kind(KindGateway))
	}
	if ref.Namespace == nil {
		ref.Namespace = ptr(gwv1.Namespace(rs.key.Namespace))
	}
	if string(*ref.Group) == gwv1.GroupName && string(*ref.Kind) == KindListenerSet {
		t.attachListenerSet(rs, i, ref)
		return
	}
	if string(*ref.Group) != gwv1.GroupName || string(*ref.Kind) != KindGateway {
		// Another kind of parent (a Service for a mesh, say) is not ours to report on,
		// except in file mode where nobody else reads these files.
		if t.opts.AllGatewayClasses {
			t.problem(rs.kind, rs.key.Namespace, rs.key.Name, field,
				fmt.Sprintf("parent kind %s is not supported, expected %s/Gateway", groupKind(string(*ref.Group), string(*ref.Kind)), gwv1.GroupName))
		}
		return
	}
	gwKey := types.NamespacedName{Namespace: string(*ref.Namespace), Name: string(ref.Name)}
	gs := t.gwByName[gwKey]
	if gs == nil {
		if t.gateways[gwKey] == nil && t.opts.AllGatewayClasses {
			ps := &parentState{ref: ref, index: i}
			ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNoMatchingParent),
				fmt.Sprintf("gateway %s not found", gwKey))
			rs.parents = append(rs.parents, ps)
		}
		return
	}
	ps := &parentState{ref: ref, index: i}
	rs.parents = append(rs.parents, ps)
	if gs.invalid != nil {
		ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNoMatchingParent),
			fmt.Sprintf("gateway %s is not accepted", gwKey))
		return
	}

	// A Gateway parentRef selects the Gateway's own listeners only: those of its
	// ListenerSets are selected through the ListenerSet.
	t.attachListeners(rs, ps, "gateway "+gwKey.String(), gs.listeners)
}

// attachListenerSet resolves parentRef i of rs, which names a ListenerSet, and attaches
// the route to the ListenerSet's listeners it selects.
func (t *translator) attachListenerSet(rs *routeState, i int, ref gwv1.ParentReference) {
	field := fmt.Sprintf("spec.parentRefs[%d]", i)
	k := types.NamespacedName{Namespace: string(*ref.Namespace), Name: string(ref.Name)}
	s := t.setByName[k]
	if s == nil {
		// A ListenerSet of a Gateway Sluice does not serve is someone else's to report.
		if t.opts.AllGatewayClasses && !t.listenerSetExists(k) {
			ps := &parentState{ref: ref, index: i}
			ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNoMatchingParent),
				fmt.Sprintf("listenerset %s not found", k))
			rs.parents = append(rs.parents, ps)
		}
		return
	}
	ps := &parentState{ref: ref, index: i}
	rs.parents = append(rs.parents, ps)
	if s.notAttached != nil {
		ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNoMatchingParent),
			fmt.Sprintf("listenerset %s is not accepted: %s", k, s.notAttached.msg))
		return
	}
	t.attachListeners(rs, ps, "listenerset "+k.String(), s.listeners)
}

// attachListeners attaches rs to those of listeners (of parent, "gateway ns/name" or
// "listenerset ns/name") that parentRef ps selects, allow it and share a hostname with
// it, and records the outcome in ps.
func (t *translator) attachListeners(rs *routeState, ps *parentState, parent string, listeners []*listenerState) {
	ref := ps.ref
	field := fmt.Sprintf("spec.parentRefs[%d]", ps.index)
	var candidates []*listenerState
	for _, l := range listeners {
		if ref.SectionName != nil && l.spec.Name != *ref.SectionName {
			continue
		}
		if ref.Port != nil && l.spec.Port != *ref.Port {
			continue
		}
		candidates = append(candidates, l)
	}
	if len(candidates) == 0 {
		ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNoMatchingParent),
			fmt.Sprintf("%s has no listener%s", parent, describeSection(ref)))
		return
	}

	var allowed []*listenerState
	for _, l := range candidates {
		if t.listenerAllows(l, rs.kind, rs.key.Namespace) {
			allowed = append(allowed, l)
		}
	}
	if len(allowed) == 0 {
		ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNotAllowedByListeners),
			fmt.Sprintf("no listener of %s%s allows %ss from namespace %s", parent, describeSection(ref), rs.kind, rs.key.Namespace))
		return
	}

	attached, matched := 0, 0
	var conflict *attachment
	for _, l := range allowed {
		hosts := effectiveHostnames(l.hostname, rs.hostnames)
		if len(hosts) == 0 {
			continue
		}
		matched++
		if c := otherKindOverlap(l, rs, hosts); c != nil {
			conflict = c
			continue
		}
		attached++
		t.attach(l, rs, hosts)
	}
	if matched == 0 {
		ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNoMatchingListenerHostname),
			fmt.Sprintf("no hostname of the route intersects the hostname of a listener of %s%s", parent, describeSection(ref)))
		return
	}
	if attached == 0 {
		// The Gateway API: of an HTTPRoute and a GRPCRoute sharing a hostname on a
		// listener, exactly one is accepted, the older (routes attach oldest first).
		ps.accepted = t.routeProblem(rs, field, string(gwv1.RouteReasonNotAllowedByListeners),
			fmt.Sprintf("the listener's hostnames %v are already served by %s %s, which is older; an HTTPRoute and a GRPCRoute cannot share a hostname on a listener",
				conflict.hostnames, conflict.route.kind, conflict.route.key))
		return
	}
	switch {
	case rs.badHostnames != nil:
		ps.accepted = rs.badHostnames
	case rs.validRules == 0 && rs.invalidRule != nil:
		ps.accepted = rs.invalidRule
	}
}

// otherKindOverlap returns a route of the other kind (HTTPRoute, GRPCRoute) already
// attached to l on a hostname that hosts overlap, or nil.
func otherKindOverlap(l *listenerState, rs *routeState, hosts []string) *attachment {
	for _, a := range l.attachments {
		if a.route.kind == rs.kind || !a.route.served() {
			continue
		}
		for _, h := range hosts {
			for _, o := range a.hostnames {
				if hostsOverlap(h, o) {
					return a
				}
			}
		}
	}
	return nil
}

// served reports whether rs has anything to serve on the listeners it attaches to: a
// route with an invalid hostname or no valid rule claims no hostname from the other kind.
func (rs *routeState) served() bool {
	return rs.badHostnames == nil && rs.validRules > 0
}

// hostsOverlap reports whether some request host can match both a and b, hostnames of
// routes on one listener ("" matches every host).
func hostsOverlap(a, b string) bool {
	if a == "" || b == "" {
		return true
	}
	_, ok := intersectHostname(a, b)
	if !ok {
		_, ok = intersectHostname(b, a)
	}
	return ok
}

// attach adds rs to listener l with hostnames hosts, once: a route whose parentRefs select
// the same listener twice serves the union of the hostnames.
func (t *translator) attach(l *listenerState, rs *routeState, hosts []string) {
	if a := l.attachedBy[rs]; a != nil {
		a.hostnames = mergeHostnames(a.hostnames, hosts)
		return
	}
	if l.attachedBy == nil {
		l.attachedBy = map[*routeState]*attachment{}
	}
	a := &attachment{route: rs, hostnames: hosts}
	l.attachedBy[rs] = a
	l.attachedRoutes++
	l.attachments = append(l.attachments, a)
}

func mergeHostnames(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range append(append([]string(nil), a...), b...) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	sortHostnames(out)
	return out
}

func describeSection(ref gwv1.ParentReference) string {
	var parts []string
	if ref.SectionName != nil {
		parts = append(parts, fmt.Sprintf("named %q", *ref.SectionName))
	}
	if ref.Port != nil {
		parts = append(parts, fmt.Sprintf("on port %d", *ref.Port))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

// listenerAllows reports whether listener l accepts routes of kind from namespace ns.
func (t *translator) listenerAllows(l *listenerState, kind, ns string) bool {
	// supportedKinds is empty for unsupported protocols, so no route attaches there.
	kindOK := false
	for _, k := range l.supportedKinds {
		if string(k.Kind) == kind {
			kindOK = true
		}
	}
	if !kindOK {
		return false
	}
	from := gwv1.NamespacesFromSame
	var selector *metav1.LabelSelector
	if ar := l.spec.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		selector = ar.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return ns == l.namespace()
	case gwv1.NamespacesFromSelector:
		if selector == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			return false
		}
		return sel.Matches(labels.Set(t.namespaceLabels(ns)))
	}
	return false
}

// namespaceLabels returns the labels of namespace ns, always including
// kubernetes.io/metadata.name as Kubernetes does.
func (t *translator) namespaceLabels(ns string) map[string]string {
	out := map[string]string{corev1.LabelMetadataName: ns}
	if n := t.namespaces[ns]; n != nil {
		for k, v := range n.Labels {
			out[k] = v
		}
	}
	return out
}
