package kube

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// TestOwnsListenerSetEntries checks which route status entries a per-Gateway deployment
// owns: those of its Gateways, and those of ListenerSets attached to its Gateways (which
// its translation reports), not those of other deployments' Gateways or ListenerSets.
func TestOwnsListenerSetEntries(t *testing.T) {
	t.Parallel()
	w := &StatusWriter{selection: translate.Options{Gateways: []types.NamespacedName{{Namespace: "infra", Name: "mine"}}}}
	res := &translate.Result{ListenerSets: map[types.NamespacedName]*gwv1.ListenerSetStatus{
		{Namespace: "infra", Name: "ls-mine"}: {},
	}}
	ls := func(ns, name string) gwv1.ParentReference {
		ref := gwv1.ParentReference{Group: ptrTo(gwv1.Group(gwv1.GroupName)), Kind: ptrTo(gwv1.Kind("ListenerSet")), Name: gwv1.ObjectName(name)}
		if ns != "" {
			ref.Namespace = ptrTo(gwv1.Namespace(ns))
		}
		return ref
	}
	owns := w.owns(res, "infra")
	for _, tc := range []struct {
		name string
		ref  gwv1.ParentReference
		want bool
	}{
		{"own Gateway", gwv1.ParentReference{Name: "mine"}, true},
		{"other Gateway", gwv1.ParentReference{Name: "theirs"}, false},
		{"own ListenerSet", ls("", "ls-mine"), true},
		{"other ListenerSet", ls("", "ls-theirs"), false},
		{"own ListenerSet, namespace explicit", ls("infra", "ls-mine"), true},
		{"same name in another namespace", ls("apps", "ls-mine"), false},
		{"own ListenerSet after another namespace was asked", ls("", "ls-mine"), true},
	} {
		if got := owns(tc.ref); got != tc.want {
			t.Errorf("%s: owns %v, want %v", tc.name, got, tc.want)
		}
	}
	all := &StatusWriter{}
	if !all.owns(res, "infra")(ls("", "anything")) {
		t.Error("a deployment serving every Gateway owns every ListenerSet entry")
	}
}
