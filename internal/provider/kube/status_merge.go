package kube

import (
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The functions of this file compute the status to write from the status an object has
// and the status a translation wants. They are pure: the writer compares their result
// with what the object has and writes only when it differs.

// mergeConditions returns want's conditions, in want's order, each with the
// lastTransitionTime of the condition of the same type in have when its status did not
// change, and now otherwise. Conditions of have that want does not name are dropped: the
// caller owns the whole list.
func mergeConditions(have, want []metav1.Condition, now metav1.Time) []metav1.Condition {
	if len(want) == 0 {
		return nil
	}
	out := make([]metav1.Condition, len(want))
	for i, c := range want {
		c.LastTransitionTime = now
		if prev := meta.FindStatusCondition(have, c.Type); prev != nil && prev.Status == c.Status {
			c.LastTransitionTime = prev.LastTransitionTime
		}
		out[i] = c
	}
	return out
}

// gatewayClassStatus sets the Accepted condition and the supported features of a
// GatewayClass that names Sluice's controller, keeping any other condition (another
// writer's SupportedVersion, say).
func gatewayClassStatus(have *gwv1.GatewayClassStatus, generation int64, features []gwv1.SupportedFeature, now metav1.Time) gwv1.GatewayClassStatus {
	out := *have.DeepCopy()
	out.SupportedFeatures = features
	want := metav1.Condition{
		Type:               string(gwv1.GatewayClassConditionStatusAccepted),
		Status:             metav1.ConditionTrue,
		Reason:             string(gwv1.GatewayClassReasonAccepted),
		Message:            "Sluice serves the Gateways of this class",
		ObservedGeneration: generation,
	}
	merged := mergeConditions(out.Conditions, []metav1.Condition{want}, now)[0]
	if prev := meta.FindStatusCondition(out.Conditions, want.Type); prev != nil {
		*prev = merged
	} else {
		out.Conditions = append(out.Conditions, merged)
	}
	return out
}

// gatewayStatus is a Gateway's status as a translation wants it. addresses, when not
// nil, replace status.addresses; otherwise the addresses the Gateway has are kept.
func gatewayStatus(have *gwv1.GatewayStatus, want *gwv1.GatewayStatus, addresses []gwv1.GatewayStatusAddress, now metav1.Time) gwv1.GatewayStatus {
	out := *have.DeepCopy()
	if addresses != nil {
		out.Addresses = addresses
	}
	out.Conditions = mergeConditions(have.Conditions, want.Conditions, now)
	out.AttachedListenerSets = want.AttachedListenerSets
	out.Listeners = nil
	for _, l := range want.Listeners {
		var prev []metav1.Condition
		for _, h := range have.Listeners {
			if h.Name == l.Name {
				prev = h.Conditions
				break
			}
		}
		l := *l.DeepCopy()
		l.Conditions = mergeConditions(prev, l.Conditions, now)
		out.Listeners = append(out.Listeners, l)
	}
	return out
}

// routeParents merges the parent statuses of an HTTPRoute: entries of other
// controllers stay as they are; Sluice's entries become want's (none when want is empty:
// the route no longer attaches to a Gateway of ours), except those owns rejects (another
// per-Gateway deployment's), which stay unless want has an entry for the same
// reference. Entries keep their positions, and new ones are appended, so that an
// unchanged status compares equal. A nil owns owns every entry.
func routeParents(have, want []gwv1.RouteParentStatus, controller gwv1.GatewayController, owns func(gwv1.ParentReference) bool, now metav1.Time) []gwv1.RouteParentStatus {
	return mergeEntries(have, want, controller, owns, now,
		func(p *gwv1.RouteParentStatus) (gwv1.GatewayController, gwv1.ParentReference, *[]metav1.Condition) {
			return p.ControllerName, p.ParentRef, &p.Conditions
		})
}

// policyAncestors merges the ancestor statuses of a policy the way routeParents merges
// route parents.
func policyAncestors(have, want []gwv1.PolicyAncestorStatus, controller gwv1.GatewayController, owns func(gwv1.ParentReference) bool, now metav1.Time) []gwv1.PolicyAncestorStatus {
	return mergeEntries(have, want, controller, owns, now,
		func(a *gwv1.PolicyAncestorStatus) (gwv1.GatewayController, gwv1.ParentReference, *[]metav1.Condition) {
			return a.ControllerName, a.AncestorRef, &a.Conditions
		})
}

// mergeEntries is routeParents and policyAncestors for any entry type; fields returns
// an entry's controller, reference and conditions.
func mergeEntries[E any, PE interface {
	*E
	DeepCopy() *E
}](have, want []E, controller gwv1.GatewayController, owns func(gwv1.ParentReference) bool, now metav1.Time,
	fields func(*E) (gwv1.GatewayController, gwv1.ParentReference, *[]metav1.Condition)) []E {
	used := make([]bool, len(want))
	// next returns want's entry for ref, merged with prev's conditions.
	next := func(i int, prev []metav1.Condition) E {
		e := *PE(&want[i]).DeepCopy()
		_, _, conds := fields(&e)
		*conds = mergeConditions(prev, *conds, now)
		used[i] = true
		return e
	}
	// Never nil: both lists are required fields, and a nil slice is sent as null,
	// which the API server rejects.
	out := []E{}
	for i := range have {
		c, ref, conds := fields(&have[i])
		if c != controller {
			out = append(out, *PE(&have[i]).DeepCopy())
			continue
		}
		matched := false
		for j := range want {
			if _, wref, _ := fields(&want[j]); !used[j] && equality.Semantic.DeepEqual(ref, wref) {
				out = append(out, next(j, *conds))
				matched = true
				break
			}
		}
		if !matched && owns != nil && !owns(ref) {
			out = append(out, *PE(&have[i]).DeepCopy())
		}
	}
	for j := range want {
		if !used[j] {
			out = append(out, next(j, nil))
		}
	}
	return out
}

// listenerSetStatus is a ListenerSet's status as a translation wants it, with the
// lastTransitionTimes of the conditions that did not change kept.
func listenerSetStatus(have *gwv1.ListenerSetStatus, want *gwv1.ListenerSetStatus, now metav1.Time) gwv1.ListenerSetStatus {
	out := gwv1.ListenerSetStatus{Conditions: mergeConditions(have.Conditions, want.Conditions, now)}
	for _, l := range want.Listeners {
		var prev []metav1.Condition
		for _, h := range have.Listeners {
			if h.Name == l.Name {
				prev = h.Conditions
				break
			}
		}
		l := *l.DeepCopy()
		l.Conditions = mergeConditions(prev, l.Conditions, now)
		out.Listeners = append(out.Listeners, l)
	}
	return out
}
