package translate

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/extproc/settings"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// policyState is one TrafficPolicy and what translation found out about it.
type policyState struct {
	p     *v1alpha1.TrafficPolicy
	key   types.NamespacedName
	phase v1alpha1.Phase
	// extProc is the processor to apply, nil when the policy disables an inherited one.
	extProc  *ir.ExtProc
	disabled bool
	// active is true when the policy has an extProc opinion (a processor or disabled).
	active  bool
	invalid *condState // the whole policy is rejected
	targets []*targetState
}

// targetState is one targetRef of a policy.
type targetState struct {
	index    int
	slot     string // the attachment point, see slotKey
	gw       *gatewayState
	route    *routeState
	section  string
	failed   *condState // TargetNotFound or Invalid
	overrode *policyState
	// foreign marks a target that exists but is served by someone else (another
	// controller, or another per-Gateway deployment): it gets no status entry from here.
	foreign bool
}

// Attachment points of policies, most specific first.
const (
	levelRule     = "rule"
	levelRoute    = "route"
	levelListener = "listener"
	levelGateway  = "gateway"
)

// slotKey names an attachment point: level, namespace/name of the target, section.
func slotKey(level string, k types.NamespacedName, section string) string {
	return level + "|" + k.String() + "|" + section
}

// routeSlot is the slot of a route of kind (the whole route when rule is ""): a
// GRPCRoute's slots differ from those of an HTTPRoute of the same name.
func routeSlot(kind string, k types.NamespacedName, rule string) string {
	level := levelRoute
	if rule != "" {
		level = levelRule
	}
	if kind == KindGRPCRoute {
		level = "grpc" + level
	}
	return slotKey(level, k, rule)
}

// slotPhase is the key of the policies competing for one attachment point and phase.
func slotPhase(slot string, phase v1alpha1.Phase) string { return slot + "|" + string(phase) }

// translatePolicies validates every TrafficPolicy, resolves its processor and records it
// at its targets. Policies are visited oldest first, so the first at each attachment point
// and phase wins (ties by namespace/name) and any later one there is Conflicted.
func (t *translator) translatePolicies() {
	pols := append([]*v1alpha1.TrafficPolicy(nil), t.res.TrafficPolicies...)
	sort.Slice(pols, func(i, j int) bool { return olderFirst(pols[i], pols[j]) })
	t.slots = map[string]*policyState{}
	for _, p := range pols {
		ps := &policyState{p: p, key: key(p), phase: v1alpha1.PhasePostRouting}
		t.policies = append(t.policies, ps)
		t.validatePolicy(ps)
		t.resolveTargets(ps)
		if ps.invalid != nil || !ps.active {
			continue
		}
		for _, ts := range ps.targets {
			if ts.failed != nil || ts.foreign {
				continue
			}
			k := slotPhase(ts.slot, ps.phase)
			if winner := t.slots[k]; winner != nil {
				ts.overrode = winner
				continue
			}
			t.slots[k] = ps
		}
	}
}

func (t *translator) policyProblem(ps *policyState, fieldPath, reason, msg string) *condState {
	return &condState{reason: reason, msg: t.problem(KindTrafficPolicy, ps.key.Namespace, ps.key.Name, fieldPath, msg)}
}

// validatePolicy checks the policy's traffic settings and resolves its processor.
func (t *translator) validatePolicy(ps *policyState) {
	invalid := func(c *condState) {
		if ps.invalid == nil {
			ps.invalid = c
		}
	}
	spec := ps.p.Spec
	if len(spec.TargetRefs) == 0 {
		invalid(t.policyProblem(ps, "spec.targetRefs", string(gwv1.PolicyReasonInvalid), "at least one target is required"))
	}
	tr := spec.Traffic
	if tr == nil {
		return
	}
	switch tr.Phase {
	case "", v1alpha1.PhasePostRouting:
	case v1alpha1.PhasePreRouting:
		ps.phase = v1alpha1.PhasePreRouting
	default:
		invalid(t.policyProblem(ps, "spec.traffic.phase", string(gwv1.PolicyReasonInvalid),
			fmt.Sprintf("%q is not supported, expected PreRouting or PostRouting", tr.Phase)))
	}
	ep := tr.ExtProc
	if ep == nil {
		return
	}
	ps.active = true
	if ep.Disabled {
		ps.disabled = true
		return
	}
	base := field.NewPath("spec", "traffic", "extProc")
	for _, e := range settings.Validate(ep, base) {
		invalid(t.policyProblem(ps, e.Field, string(gwv1.PolicyReasonInvalid), e.ErrorBody()))
	}
	from := referrer{group: v1alpha1.Group, kind: KindTrafficPolicy, namespace: ps.key.Namespace}
	b, rerr := t.resolveBackendRef(from, ep.BackendRef)
	if rerr != nil {
		invalid(t.policyProblem(ps, base.Child("backendRef").String(), string(gwv1.PolicyReasonInvalid), rerr.msg))
		return
	}
	// Processors speak gRPC: h2c unless the backend asks for TLS.
	if b.Protocol != ir.UpstreamHTTPS {
		b.Protocol = ir.UpstreamH2C
	}
	ps.extProc = &ir.ExtProc{Policy: ps.key.String(), Backend: b, Spec: ep}
}

// resolveTargets finds the Gateways, listeners, HTTPRoutes and rules the policy names.
func (t *translator) resolveTargets(ps *policyState) {
	for i, ref := range ps.p.Spec.TargetRefs {
		ts := &targetState{index: i}
		ps.targets = append(ps.targets, ts)
		f := fmt.Sprintf("spec.targetRefs[%d]", i)
		k := types.NamespacedName{Namespace: ps.key.Namespace, Name: string(ref.Name)}
		if ref.SectionName != nil {
			ts.section = string(*ref.SectionName)
		}
		if string(ref.Group) != gwv1.GroupName || (ref.Kind != KindGateway && ref.Kind != KindHTTPRoute && ref.Kind != KindGRPCRoute) {
			ts.failed = t.policyProblem(ps, f, string(gwv1.PolicyReasonInvalid),
				fmt.Sprintf("target kind %s is not supported, expected %s/Gateway, HTTPRoute or GRPCRoute",
					groupKind(string(ref.Group), string(ref.Kind)), gwv1.GroupName))
			continue
		}
		if ref.Kind == KindGateway {
			ts.gw = t.gwByName[k]
			switch {
			case ts.gw == nil && t.gateways[k] != nil:
				// Another controller's Gateway, or another per-Gateway deployment's: not
				// ours to report on.
				ts.foreign = true
			case ts.gw == nil:
				ts.failed = t.policyProblem(ps, f, string(gwv1.PolicyReasonTargetNotFound), fmt.Sprintf("gateway %s not found", k))
			case ts.section == "":
				ts.slot = slotKey(levelGateway, k, "")
			case findListener(ts.gw, ts.section) == nil:
				ts.failed = t.policyProblem(ps, f+".sectionName", string(gwv1.PolicyReasonTargetNotFound),
					fmt.Sprintf("gateway %s has no listener %q", k, ts.section))
			default:
				ts.slot = slotKey(levelListener, k, ts.section)
			}
			continue
		}
		kind := string(ref.Kind)
		ts.route = t.routeByName[routeRef{kind, k}]
		switch {
		case ts.route == nil:
			ts.failed = t.policyProblem(ps, f, string(gwv1.PolicyReasonTargetNotFound), fmt.Sprintf("%s %s not found", strings.ToLower(kind), k))
		case ps.phase == v1alpha1.PhasePreRouting:
			ts.failed = t.policyProblem(ps, f, string(gwv1.PolicyReasonInvalid),
				"phase PreRouting applies to Gateway targets only: the route is not known before routing")
		case ts.section == "":
			ts.slot = routeSlot(kind, k, "")
		case !hasRule(ts.route, ts.section):
			ts.failed = t.policyProblem(ps, f+".sectionName", string(gwv1.PolicyReasonTargetNotFound),
				fmt.Sprintf("%s %s has no rule named %q", strings.ToLower(kind), k, ts.section))
		default:
			ts.slot = routeSlot(kind, k, ts.section)
		}
	}
}

func findListener(gs *gatewayState, name string) *listenerState {
	for _, l := range gs.listeners {
		if string(l.spec.Name) == name {
			return l
		}
	}
	return nil
}

func hasRule(rs *routeState, name string) bool {
	for _, r := range rs.rules {
		if r.name == name {
			return true
		}
	}
	return false
}

// winner returns the processor for the most specific of slots (most specific first) that
// holds a policy of phase, or nil. A disabling policy wins like any other and yields nil.
func (t *translator) winner(phase v1alpha1.Phase, slots ...string) *ir.ExtProc {
	for _, s := range slots {
		if p := t.slots[slotPhase(s, phase)]; p != nil {
			if p.disabled {
				return nil
			}
			return p.extProc
		}
	}
	return nil
}

// postRouting is the processor of a route of rule on listener l.
func (t *translator) postRouting(l *listenerState, rs *routeState, rule *ruleState) *ir.ExtProc {
	var slots []string
	if rule.name != "" {
		slots = append(slots, routeSlot(rs.kind, rs.key, rule.name))
	}
	slots = append(slots, routeSlot(rs.kind, rs.key, ""))
	slots = append(slots, listenerSlots(l)...)
	return t.winner(v1alpha1.PhasePostRouting, slots...)
}

// preRouting is the processor that runs on listener l before routing.
func (t *translator) preRouting(l *listenerState) *ir.ExtProc {
	return t.winner(v1alpha1.PhasePreRouting, listenerSlots(l)...)
}

// listenerSlots are the attachment points of listener l, most specific first. A
// ListenerSet's listener gets its Gateway's policies, but not those of a Gateway
// listener that happens to have the same name.
func listenerSlots(l *listenerState) []string {
	gw := slotKey(levelGateway, l.gw.key, "")
	if l.set != nil {
		return []string{gw}
	}
	return []string{slotKey(levelListener, l.gw.key, string(l.spec.Name)), gw}
}
