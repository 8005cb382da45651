package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// printStatus prints the status conditions the translator computed for every Gateway,
// listener, route parent and policy ancestor, one object per paragraph.
func printStatus(w io.Writer, r *translate.Result) {
	for _, k := range sortedKeys(r.Gateways) {
		st := r.Gateways[k]
		fmt.Fprintf(w, "Gateway %s: %s\n", k, conditions(st.Conditions))
		for _, l := range st.Listeners {
			fmt.Fprintf(w, "  listener %s: attachedRoutes=%d %s\n", l.Name, l.AttachedRoutes, conditions(l.Conditions))
		}
	}
	for _, k := range sortedKeys(r.HTTPRoutes) {
		printParents(w, "HTTPRoute", k, r.HTTPRoutes[k].Parents)
	}
	for _, k := range sortedKeys(r.GRPCRoutes) {
		printParents(w, "GRPCRoute", k, r.GRPCRoutes[k].Parents)
	}
	for _, k := range sortedKeys(r.Policies) {
		fmt.Fprintf(w, "TrafficPolicy %s:\n", k)
		for _, a := range r.Policies[k].Ancestors {
			kind := "Gateway"
			if a.AncestorRef.Kind != nil {
				kind = string(*a.AncestorRef.Kind)
			}
			fmt.Fprintf(w, "  ancestor %s %s: %s\n", kind, string(a.AncestorRef.Name)+sectionOf(a.AncestorRef.SectionName), conditions(a.Conditions))
		}
	}
}

func printParents(w io.Writer, kind string, k types.NamespacedName, parents []gwv1.RouteParentStatus) {
	fmt.Fprintf(w, "%s %s:\n", kind, k)
	for _, p := range parents {
		fmt.Fprintf(w, "  parent %s: %s\n", string(p.ParentRef.Name)+sectionOf(p.ParentRef.SectionName), conditions(p.Conditions))
	}
}

func sectionOf[T ~string](s *T) string {
	if s == nil || *s == "" {
		return ""
	}
	return "/" + string(*s)
}

func conditions(cs []metav1.Condition) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		p := fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Reason)
		// Only the unhealthy conditions need their message: Conflicted is the one whose
		// True is bad.
		bad := c.Status != metav1.ConditionTrue
		if c.Type == "Conflicted" {
			bad = c.Status == metav1.ConditionTrue
		}
		if bad && c.Message != "" {
			p += ": " + c.Message
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[types.NamespacedName]V) []types.NamespacedName {
	keys := make([]types.NamespacedName, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}
