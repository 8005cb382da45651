package kube

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// TestPerGatewayDeployments runs two status writers the way two per-Gateway deployments
// (`sluice kube --gateway ns/a`, `--gateway ns/b`) would, against the real API server:
// each writes its own Gateway's status, both keep each other's entries on a route
// attached to both Gateways and on a policy targeting that route, and once settled
// neither writes again (no flapping between the two).
func TestPerGatewayDeployments(t *testing.T) {
	cfg, scheme, c, ctx := envClient(t)
	f := fixture{ns: newNamespace(ctx, t, c, "select"), class: "sluice-select", otherClass: "other-select", port: 18082}
	f.create(ctx, t, c)
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: f.ns, Name: name} }

	// A second Gateway of Sluice's class, the route attached to both, and a policy on
	// the route.
	gwB := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "gw-b"},
		Spec: gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(f.class), Listeners: []gwv1.Listener{
			{Name: "http", Port: gwv1.PortNumber(f.port), Protocol: gwv1.HTTPProtocolType},
		}}}
	if err := c.Create(ctx, gwB); err != nil {
		t.Fatal(err)
	}
	var route gwv1.HTTPRoute
	mustGet(ctx, t, c, key("route"), &route)
	route.Spec.ParentRefs = []gwv1.ParentReference{{Name: "gw"}, {Name: "gw-b"}}
	if err := c.Update(ctx, &route); err != nil {
		t.Fatal(err)
	}
	pol := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "on-route"},
		Spec: v1alpha1.TrafficPolicySpec{
			TargetRefs: []gwv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gwv1.LocalPolicyTargetReference{
				Group: gwv1.GroupName, Kind: "HTTPRoute", Name: "route"}}},
			Traffic: &v1alpha1.Traffic{ExtProc: &v1alpha1.ExtProc{
				BackendRef: gwv1.BackendObjectReference{Group: ptrTo[gwv1.Group](v1alpha1.Group), Kind: ptrTo[gwv1.Kind]("Backend"), Name: "processor"},
			}},
		}}
	if err := c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}

	p, err := New(cfg, Options{Scheme: scheme, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res := startProvider(t, p).waitState(t, "the fixture in the provider's state", func(r *translate.Resources) bool {
		return slices.ContainsFunc(r.TrafficPolicies, func(p *v1alpha1.TrafficPolicy) bool { return p.Namespace == f.ns && p.Name == "on-route" }) &&
			slices.ContainsFunc(r.HTTPRoutes, func(h *gwv1.HTTPRoute) bool { return h.Namespace == f.ns && len(h.Spec.ParentRefs) == 2 })
	})

	type deployment struct {
		name   string
		opts   translate.Options
		writer *StatusWriter
	}
	var deps []deployment
	for _, d := range []struct{ gw, addr string }{{"gw", "192.0.2.1"}, {"gw-b", "192.0.2.2"}} {
		sel := []types.NamespacedName{key(d.gw)}
		deps = append(deps, deployment{name: d.gw,
			opts: translate.Options{ControllerName: testController, Gateways: sel},
			writer: NewStatusWriter(c, c, StatusOptions{ControllerName: testController, Addresses: []string{d.addr},
				Gateways: sel, Logger: quietLogger()})})
	}
	pass := func() (written int) {
		t.Helper()
		for _, d := range deps {
			result := translate.Translate(res, d.opts)
			if _, ok := result.Gateways[key(d.name)]; !ok || len(result.Gateways) != 1 {
				t.Fatalf("deployment %s serves %v", d.name, result.Gateways)
			}
			n, err := d.writer.Write(ctx, result)
			if err != nil {
				t.Fatalf("deployment %s: writing status: %v", d.name, err)
			}
			written += n
		}
		return written
	}
	if n := pass(); n == 0 {
		t.Fatal("the first pass wrote nothing")
	}
	pass() // each writer now sees the other's entries
	if n := pass(); n != 0 {
		t.Errorf("a settled pass wrote %d objects; the two deployments overwrite each other", n)
	}

	for _, d := range []struct{ gw, addr string }{{"gw", "192.0.2.1"}, {"gw-b", "192.0.2.2"}} {
		var gw gwv1.Gateway
		mustGet(ctx, t, c, key(d.gw), &gw)
		wantTrue(t, "Gateway "+d.gw, gw.Status.Conditions, gw.Generation, "Accepted", "Programmed")
		if len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != d.addr {
			t.Errorf("Gateway %s addresses %+v, want %s (its own deployment's)", d.gw, gw.Status.Addresses, d.addr)
		}
	}
	mustGet(ctx, t, c, key("route"), &route)
	var parents []string
	for _, ps := range route.Status.Parents {
		parents = append(parents, string(ps.ParentRef.Name))
		wantTrue(t, "HTTPRoute parent "+string(ps.ParentRef.Name), ps.Conditions, route.Generation, "Accepted", "ResolvedRefs")
	}
	if slices.Sort(parents); !slices.Equal(parents, []string{"gw", "gw-b"}) {
		t.Errorf("HTTPRoute parents %v, want one entry per Gateway", parents)
	}
	var got v1alpha1.TrafficPolicy
	mustGet(ctx, t, c, key("on-route"), &got)
	var ancestors []string
	for _, a := range got.Status.Ancestors {
		ancestors = append(ancestors, string(a.AncestorRef.Name))
		wantTrue(t, "TrafficPolicy ancestor "+string(a.AncestorRef.Name), a.Conditions, got.Generation, "Accepted")
	}
	if slices.Sort(ancestors); !slices.Equal(ancestors, []string{"gw", "gw-b"}) {
		t.Errorf("TrafficPolicy ancestors %v, want one per Gateway", ancestors)
	}
	// The Gateway-level policy of the fixture targets gw: only gw's deployment reports it.
	mustGet(ctx, t, c, key("extproc"), &got)
	if len(got.Status.Ancestors) != 1 || got.Status.Ancestors[0].AncestorRef.Name != "gw" {
		t.Errorf("Gateway policy ancestors %+v, want only gw", got.Status.Ancestors)
	}
}
