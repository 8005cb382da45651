package kube

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/translate"
)

var (
	t0 = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 = metav1.NewTime(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
)

func cond(typ string, status metav1.ConditionStatus, reason string, gen int64, at metav1.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: reason, ObservedGeneration: gen, LastTransitionTime: at}
}

func TestMergeConditions(t *testing.T) {
	have := []metav1.Condition{
		cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0),
		cond("Programmed", metav1.ConditionTrue, "Programmed", 1, t0),
		cond("Stale", metav1.ConditionTrue, "Old", 1, t0),
	}
	want := []metav1.Condition{
		cond("Accepted", metav1.ConditionTrue, "Accepted", 2, metav1.Time{}),   // same status: keeps t0
		cond("Programmed", metav1.ConditionFalse, "Invalid", 2, metav1.Time{}), // changed: t1
		cond("ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs", 2, metav1.Time{}),
	}
	got := mergeConditions(have, want, t1)
	exp := []metav1.Condition{
		cond("Accepted", metav1.ConditionTrue, "Accepted", 2, t0),
		cond("Programmed", metav1.ConditionFalse, "Invalid", 2, t1),
		cond("ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs", 2, t1),
	}
	if !equality.Semantic.DeepEqual(got, exp) {
		t.Fatalf("got %+v\nwant %+v", got, exp)
	}
	if want[0].LastTransitionTime != (metav1.Time{}) {
		t.Fatal("mergeConditions changed its input")
	}
}

func TestGatewayClassStatusKeepsOtherConditions(t *testing.T) {
	have := gwv1.GatewayClassStatus{Conditions: []metav1.Condition{
		cond("Accepted", metav1.ConditionUnknown, "Pending", 1, t0),
		cond("SupportedVersion", metav1.ConditionTrue, "SupportedVersion", 1, t0),
	}}
	feats := translate.SupportedFeatures()
	got := gatewayClassStatus(&have, 3, feats, t1)
	if !equality.Semantic.DeepEqual(got.SupportedFeatures, feats) {
		t.Fatalf("supportedFeatures %+v, want %+v", got.SupportedFeatures, feats)
	}
	if len(got.Conditions) != 2 || got.Conditions[0].Status != metav1.ConditionTrue ||
		got.Conditions[0].ObservedGeneration != 3 || !got.Conditions[0].LastTransitionTime.Equal(&t1) ||
		got.Conditions[1].Type != "SupportedVersion" {
		t.Fatalf("got %+v", got.Conditions)
	}
	again := gatewayClassStatus(&got, 3, feats, metav1.NewTime(t1.Add(time.Hour)))
	if !equality.Semantic.DeepEqual(got, again) {
		t.Fatalf("a second merge changed the status:\n%+v\n%+v", got, again)
	}
}

func TestGatewayStatus(t *testing.T) {
	ip := gwv1.IPAddressType
	have := gwv1.GatewayStatus{
		Addresses: []gwv1.GatewayStatusAddress{{Type: &ip, Value: "10.0.0.9"}},
		Listeners: []gwv1.ListenerStatus{{Name: "http", Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)}}},
	}
	want := &gwv1.GatewayStatus{
		Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, metav1.Time{})},
		Listeners: []gwv1.ListenerStatus{
			{Name: "http", AttachedRoutes: 2, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, metav1.Time{})}},
			{Name: "other", Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionFalse, "Invalid", 1, metav1.Time{})}},
		},
	}
	got := gatewayStatus(&have, want, nil, t1)
	if len(got.Addresses) != 1 || got.Addresses[0].Value != "10.0.0.9" {
		t.Fatalf("addresses not kept: %+v", got.Addresses)
	}
	if l := got.Listeners[0]; l.AttachedRoutes != 2 || !l.Conditions[0].LastTransitionTime.Equal(&t0) {
		t.Fatalf("listener http: %+v", l)
	}
	if l := got.Listeners[1]; !l.Conditions[0].LastTransitionTime.Equal(&t1) {
		t.Fatalf("listener other: %+v", l)
	}
	got = gatewayStatus(&have, want, []gwv1.GatewayStatusAddress{{Type: &ip, Value: "192.0.2.1"}}, t1)
	if len(got.Addresses) != 1 || got.Addresses[0].Value != "192.0.2.1" {
		t.Fatalf("addresses not replaced: %+v", got.Addresses)
	}
	if want.Listeners[0].Conditions[0].LastTransitionTime != (metav1.Time{}) {
		t.Fatal("gatewayStatus changed the translation's status")
	}
}

func TestRouteParentsKeepsOtherControllers(t *testing.T) {
	const ours, theirs = gwv1.GatewayController("gateway.sluice.dev/controller"), gwv1.GatewayController("example.com/other")
	ref := func(name string) gwv1.ParentReference { return gwv1.ParentReference{Name: gwv1.ObjectName(name)} }
	have := []gwv1.RouteParentStatus{
		{ParentRef: ref("a"), ControllerName: theirs, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)}},
		{ParentRef: ref("mine"), ControllerName: ours, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)}},
		{ParentRef: ref("gone"), ControllerName: ours, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)}},
	}
	want := []gwv1.RouteParentStatus{
		{ParentRef: ref("mine"), ControllerName: ours, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 2, metav1.Time{})}},
	}
	got := routeParents(have, want, ours, nil, t1)
	if len(got) != 2 || got[0].ControllerName != theirs || got[1].ParentRef.Name != "mine" ||
		!got[1].Conditions[0].LastTransitionTime.Equal(&t0) || got[1].Conditions[0].ObservedGeneration != 2 {
		t.Fatalf("got %+v", got)
	}
	if got := routeParents(have, nil, ours, nil, t1); len(got) != 1 || got[0].ControllerName != theirs {
		t.Fatalf("detached route: got %+v", got)
	}
}

func TestPolicyAncestorsKeepsOtherControllers(t *testing.T) {
	const ours, theirs = gwv1.GatewayController("gateway.sluice.dev/controller"), gwv1.GatewayController("example.com/other")
	ref := func(name string) gwv1.ParentReference { return gwv1.ParentReference{Name: gwv1.ObjectName(name)} }
	have := []gwv1.PolicyAncestorStatus{
		{AncestorRef: ref("gw"), ControllerName: theirs, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)}},
		{AncestorRef: ref("gw"), ControllerName: ours, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)}},
	}
	want := []gwv1.PolicyAncestorStatus{
		{AncestorRef: ref("gw"), ControllerName: ours, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionFalse, "Conflicted", 1, metav1.Time{})}},
	}
	got := policyAncestors(have, want, ours, nil, t1)
	if len(got) != 2 || got[0].ControllerName != theirs || got[1].Conditions[0].Reason != "Conflicted" ||
		!got[1].Conditions[0].LastTransitionTime.Equal(&t1) {
		t.Fatalf("got %+v", got)
	}
}

// TestMergeKeepsOtherDeployments: a per-Gateway deployment serving Gateway a keeps
// Sluice's entries for Gateway b (another deployment's), replaces its own, drops its own
// that the translation no longer wants, and does not duplicate an entry both compute.
func TestMergeKeepsOtherDeployments(t *testing.T) {
	const ours = gwv1.GatewayController("gateway.sluice.dev/controller")
	ref := func(name string) gwv1.ParentReference { return gwv1.ParentReference{Name: gwv1.ObjectName(name)} }
	entry := func(name, reason string, ltt metav1.Time) gwv1.RouteParentStatus {
		return gwv1.RouteParentStatus{ParentRef: ref(name), ControllerName: ours,
			Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, reason, 1, ltt)}}
	}
	sel := translate.Options{Gateways: []types.NamespacedName{{Namespace: "default", Name: "a"}}}
	owns := func(r gwv1.ParentReference) bool { return sel.Owns(r, "default") }
	names := func(ps []gwv1.RouteParentStatus) (out []string) {
		for _, p := range ps {
			out = append(out, string(p.ParentRef.Name)+"="+p.Conditions[0].Reason)
		}
		return out
	}
	tests := []struct {
		name       string
		have, want []gwv1.RouteParentStatus
		expect     []string
	}{
		{"other deployment's entry kept", []gwv1.RouteParentStatus{entry("b", "Accepted", t0), entry("a", "Old", t0)},
			[]gwv1.RouteParentStatus{entry("a", "Accepted", metav1.Time{})}, []string{"b=Accepted", "a=Accepted"}},
		{"own entry dropped when no longer wanted", []gwv1.RouteParentStatus{entry("a", "Accepted", t0), entry("b", "Accepted", t0)},
			nil, []string{"b=Accepted"}},
		{"entry both deployments compute is not duplicated", []gwv1.RouteParentStatus{entry("nowhere", "Old", t0)},
			[]gwv1.RouteParentStatus{entry("nowhere", "TargetNotFound", metav1.Time{})}, []string{"nowhere=TargetNotFound"}},
		{"new entry appended", []gwv1.RouteParentStatus{entry("b", "Accepted", t0)},
			[]gwv1.RouteParentStatus{entry("a", "Accepted", metav1.Time{})}, []string{"b=Accepted", "a=Accepted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := names(routeParents(tc.have, tc.want, ours, owns, t1))
			if !slices.Equal(got, tc.expect) {
				t.Fatalf("got %v, want %v", got, tc.expect)
			}
		})
	}
}

// TestMergeNeverNil: parents and ancestors are required fields; a nil list is sent as
// null and the API server rejects the whole status.
func TestMergeNeverNil(t *testing.T) {
	const ours = gwv1.GatewayController("gateway.sluice.dev/controller")
	mine := []gwv1.PolicyAncestorStatus{{AncestorRef: gwv1.ParentReference{Name: "gw"}, ControllerName: ours}}
	if got := policyAncestors(mine, nil, ours, nil, t1); got == nil || len(got) != 0 {
		t.Errorf("policyAncestors = %#v, want an empty list", got)
	}
	if got := routeParents(nil, nil, ours, nil, t1); got == nil {
		t.Error("routeParents = nil, want an empty list")
	}
}

func TestSetIfChangedTreatsNilAndEmptyAlike(t *testing.T) {
	var parents []gwv1.RouteParentStatus
	if setIfChanged(&parents, []gwv1.RouteParentStatus{}) {
		t.Fatal("nil and empty differ")
	}
	if !setIfChanged(&parents, []gwv1.RouteParentStatus{{ControllerName: "x"}}) || len(parents) != 1 {
		t.Fatal("a change was not stored")
	}
}

func TestListenerSetStatus(t *testing.T) {
	have := gwv1.ListenerSetStatus{
		Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)},
		Listeners:  []gwv1.ListenerEntryStatus{{Name: "web", Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, "Accepted", 1, t0)}}},
	}
	want := &gwv1.ListenerSetStatus{
		Conditions: []metav1.Condition{
			cond("Accepted", metav1.ConditionTrue, "Accepted", 2, metav1.Time{}),
			cond("Programmed", metav1.ConditionFalse, "ListenersNotValid", 2, metav1.Time{}),
		},
		Listeners: []gwv1.ListenerEntryStatus{{Name: "web", AttachedRoutes: 1,
			Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionFalse, "HostnameConflict", 2, metav1.Time{})}}},
	}
	got := listenerSetStatus(&have, want, t1)
	if c := got.Conditions[0]; !c.LastTransitionTime.Equal(&t0) || c.ObservedGeneration != 2 {
		t.Errorf("Accepted: %+v, want the old transition time and generation 2", c)
	}
	if c := got.Conditions[1]; !c.LastTransitionTime.Equal(&t1) {
		t.Errorf("Programmed: %+v, want transition time now", c)
	}
	if l := got.Listeners[0]; l.AttachedRoutes != 1 || !l.Conditions[0].LastTransitionTime.Equal(&t1) {
		t.Errorf("listener web: %+v", l)
	}
}

func TestGatewayStatusAttachedListenerSets(t *testing.T) {
	n := int32(2)
	got := gatewayStatus(&gwv1.GatewayStatus{}, &gwv1.GatewayStatus{AttachedListenerSets: &n}, nil, t1)
	if got.AttachedListenerSets == nil || *got.AttachedListenerSets != 2 {
		t.Fatalf("attachedListenerSets = %v, want 2", got.AttachedListenerSets)
	}
	old := int32(1)
	got = gatewayStatus(&gwv1.GatewayStatus{AttachedListenerSets: &old}, &gwv1.GatewayStatus{}, nil, t1)
	if got.AttachedListenerSets != nil {
		t.Fatalf("attachedListenerSets = %v, want it dropped", *got.AttachedListenerSets)
	}
}
