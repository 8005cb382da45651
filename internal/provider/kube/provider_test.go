package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestStatusOnly(t *testing.T) {
	base := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Generation: 1, Labels: map[string]string{"a": "1"}}}
	statusChanged := base.DeepCopy()
	statusChanged.Status.Conditions = []metav1.Condition{{Type: "Accepted"}}
	specChanged := base.DeepCopy()
	specChanged.Generation = 2
	labelChanged := base.DeepCopy()
	labelChanged.Labels["a"] = "2"
	annotated := base.DeepCopy()
	annotated.Annotations = map[string]string{"x": "y"}
	for name, tc := range map[string]struct {
		next any
		want bool
	}{
		"status": {statusChanged, true},
		"spec":   {specChanged, false},
		"labels": {labelChanged, false},
		"annots": {annotated, false},
		"tomb":   {"not an object", false},
	} {
		if got := statusOnly(base, tc.next); got != tc.want {
			t.Errorf("%s: statusOnly = %v, want %v", name, got, tc.want)
		}
	}
}

func TestPointersSortsByNamespaceAndName(t *testing.T) {
	items := []corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "a"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "z"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "b"}},
	}
	got := pointers(items)
	var keys []string
	for _, s := range got {
		keys = append(keys, s.Namespace+"/"+s.Name)
	}
	if want := "a/b a/z b/a"; strings.Join(keys, " ") != want {
		t.Errorf("order %v, want %s", keys, want)
	}
	if got[0] != &items[2] {
		t.Error("pointers copied the items instead of pointing at them")
	}
}
