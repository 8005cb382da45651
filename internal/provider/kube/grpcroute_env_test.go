package kube

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// TestGRPCRouteAgainstAPIServer: a GRPCRoute created in the API server reaches the
// provider's state, is served as a route to its Service over h2c, and gets Sluice's
// parent status; one that shares the older HTTPRoute's hostname is not accepted (its
// name sorts after the HTTPRoute's, for when both were created in the same second).
func TestGRPCRouteAgainstAPIServer(t *testing.T) {
	cfg, scheme, c, ctx := envClient(t)
	f := fixture{ns: newNamespace(ctx, t, c, "grpc"), class: "sluice-grpc", otherClass: "other-grpc", port: 18084}
	f.create(ctx, t, c)
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: f.ns, Name: name} }
	route := func(name string, host gwv1.Hostname) *gwv1.GRPCRoute {
		return &gwv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
			Spec: gwv1.GRPCRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw"}}},
				Hostnames:       []gwv1.Hostname{host},
				Rules: []gwv1.GRPCRouteRule{{
					Matches: []gwv1.GRPCRouteMatch{{Method: &gwv1.GRPCMethodMatch{Service: ptrTo("echo.Echo"), Method: ptrTo("Say")}}},
					BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{
						BackendObjectReference: gwv1.BackendObjectReference{Name: "echo", Port: ptrTo[gwv1.PortNumber](80)}}}},
				}},
			}}
	}
	for _, r := range []*gwv1.GRPCRoute{route("grpc", "grpc.example.com"), route("zz-clash", "www.example.com")} {
		if err := c.Create(ctx, r); err != nil {
			t.Fatalf("creating GRPCRoute %s: %v", r.Name, err)
		}
	}

	p, err := New(cfg, Options{Scheme: scheme, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res := startProvider(t, p).waitState(t, "the GRPCRoutes in the provider's state", func(r *translate.Resources) bool {
		return len(slices.DeleteFunc(slices.Clone(r.GRPCRoutes), func(g *gwv1.GRPCRoute) bool { return g.Namespace != f.ns })) == 2
	})
	result := translate.Translate(res, translate.Options{ControllerName: testController})
	var grpcRoutes []*ir.Route
	for _, r := range routesOf(result.Config, f.port) {
		if r.GRPCRoute != "" {
			grpcRoutes = append(grpcRoutes, r)
		}
	}
	if len(grpcRoutes) != 1 || grpcRoutes[0].GRPCRoute != key("grpc").String() || grpcRoutes[0].Match.Path != "/echo.Echo/Say" ||
		grpcRoutes[0].Backends[0].Backend.Protocol != ir.UpstreamH2C {
		t.Fatalf("GRPCRoute routes %+v, want grpc's one, exact /echo.Echo/Say, over h2c", grpcRoutes)
	}

	w := NewStatusWriter(c, c, StatusOptions{ControllerName: testController, Logger: quietLogger()})
	if _, err := w.Write(ctx, result); err != nil {
		t.Fatalf("writing status: %v", err)
	}
	var got gwv1.GRPCRoute
	mustGet(ctx, t, c, key("grpc"), &got)
	if len(got.Status.Parents) != 1 || got.Status.Parents[0].ControllerName != testController {
		t.Fatalf("GRPCRoute parents %+v, want Sluice's entry for gw", got.Status.Parents)
	}
	wantTrue(t, "GRPCRoute parent", got.Status.Parents[0].Conditions, got.Generation, "Accepted", "ResolvedRefs")
	mustGet(ctx, t, c, key("zz-clash"), &got)
	if len(got.Status.Parents) != 1 {
		t.Fatalf("GRPCRoute zz-clash parents %+v", got.Status.Parents)
	}
	if c := condOf(t, "zz-clash", got.Status.Parents[0].Conditions, "Accepted"); c.Status != metav1.ConditionFalse {
		t.Errorf("GRPCRoute zz-clash Accepted %s (%s), want False: HTTPRoute route is older (or as old, and first by name) on www.example.com", c.Status, c.Message)
	}
}
