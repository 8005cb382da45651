package kube

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/translate"
)

const testController = "gateway.sluice.dev/controller"

// quietLogger discards logs, unless SLUICE_TEST_LOG is set (debugging).
func quietLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// latest keeps the most recent state a Provider reported.
type latest struct {
	mu  sync.Mutex
	res *translate.Resources
	n   int
}

func (l *latest) update(res *translate.Resources, err error) {
	if err != nil {
		return
	}
	l.mu.Lock()
	l.res, l.n = res, l.n+1
	l.mu.Unlock()
}

func (l *latest) get() (*translate.Resources, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res, l.n
}

// waitState waits until the provider reported a state for which ok holds, and returns it.
func (l *latest) waitState(t *testing.T, what string, ok func(*translate.Resources) bool) *translate.Resources {
	t.Helper()
	var res *translate.Resources
	eventually(t, 20*time.Second, what, func() bool {
		res, _ = l.get()
		return res != nil && ok(res)
	})
	return res
}

// startProvider runs a Provider until the test ends.
func startProvider(t *testing.T, p *Provider) *latest {
	t.Helper()
	l := &latest{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, l.update) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("provider: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the provider did not stop within 30s")
		}
	})
	return l
}

func ptrTo[T any](v T) *T { return &v }

// fixture creates, in namespace ns, a GatewayClass of Sluice and one of another
// controller, a Gateway of each, a Service with an EndpointSlice, a Backend, an HTTPRoute
// attached to both Gateways and a TrafficPolicy on Sluice's Gateway.
type fixture struct {
	ns, class, otherClass string
	port                  int32
}

func (f fixture) create(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	objs := []client.Object{
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: f.class},
			Spec: gwv1.GatewayClassSpec{ControllerName: testController}},
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: f.otherClass},
			Spec: gwv1.GatewayClassSpec{ControllerName: "example.com/other"}},
		&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "gw"},
			Spec: gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(f.class), Listeners: []gwv1.Listener{
				{Name: "http", Port: gwv1.PortNumber(f.port), Protocol: gwv1.HTTPProtocolType},
			}}},
		&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "foreign"},
			Spec: gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(f.otherClass), Listeners: []gwv1.Listener{
				{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType},
			}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "echo"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
			}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "echo-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.1.2.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}},
			},
			Ports: []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo[int32](8080)}}},
		&v1alpha1.Backend{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "processor"},
			Spec: v1alpha1.BackendSpec{AppProtocol: v1alpha1.AppProtocolH2C,
				Endpoints: []v1alpha1.BackendEndpoint{{Host: "127.0.0.1", Port: 18080}}}},
		&gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "route"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw"}, {Name: "foreign"}}},
				Hostnames:       []gwv1.Hostname{"www.example.com"},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{Name: "echo", Port: ptrTo[gwv1.PortNumber](80)}}}}}},
			}},
		&v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "extproc"},
			Spec: v1alpha1.TrafficPolicySpec{
				TargetRefs: []gwv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gwv1.LocalPolicyTargetReference{
					Group: gwv1.GroupName, Kind: "Gateway", Name: "gw"}}},
				Traffic: &v1alpha1.Traffic{ExtProc: &v1alpha1.ExtProc{
					BackendRef:  gwv1.BackendObjectReference{Group: ptrTo[gwv1.Group](v1alpha1.Group), Kind: ptrTo[gwv1.Kind]("Backend"), Name: "processor"},
					FailureMode: v1alpha1.FailClosed,
				}},
			}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, o := range objs[:2] {
			_ = c.Delete(ctx, o)
		}
	})
}

// routesOf returns the IR routes of listener port.
func routesOf(cfg *ir.Config, port int32) []*ir.Route {
	var out []*ir.Route
	for _, p := range cfg.Ports {
		if p.Number != port {
			continue
		}
		for _, l := range p.Listeners {
			for _, vh := range l.VirtualHosts {
				out = append(out, vh.Routes...)
			}
		}
	}
	return out
}

func endpointsOf(r *ir.Route) []ir.Endpoint {
	var out []ir.Endpoint
	for _, b := range r.Backends {
		if b.Backend != nil {
			out = append(out, b.Backend.Endpoints...)
		}
	}
	return out
}

func condOf(t *testing.T, what string, conds []metav1.Condition, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		t.Fatalf("%s: no %s condition in %+v", what, typ, conds)
	}
	return *c
}

func wantTrue(t *testing.T, what string, conds []metav1.Condition, gen int64, types ...string) {
	t.Helper()
	for _, typ := range types {
		c := condOf(t, what, conds, typ)
		if c.Status != metav1.ConditionTrue || c.ObservedGeneration != gen || c.LastTransitionTime.IsZero() {
			t.Errorf("%s: %s = %s (%s: %s), observedGeneration %d (want True, %d), lastTransitionTime %v",
				what, typ, c.Status, c.Reason, c.Message, c.ObservedGeneration, gen, c.LastTransitionTime)
		}
	}
}

// TestProviderAndStatusAgainstAPIServer runs the provider against a real API server,
// translates what it reports, writes status and checks it on every object, checks that
// an identical second pass writes nothing, and that edits reach the translation.
func TestProviderAndStatusAgainstAPIServer(t *testing.T) {
	cfg, scheme, c, ctx := envClient(t)
	f := fixture{ns: newNamespace(ctx, t, c, "status"), class: "sluice-status", otherClass: "other-status", port: 18081}
	f.create(ctx, t, c)
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: f.ns, Name: name} }

	p, err := New(cfg, Options{Scheme: scheme, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	states := startProvider(t, p)
	res := states.waitState(t, "the fixture in the provider's state", func(r *translate.Resources) bool {
		return len(r.TrafficPolicies) > 0 && len(r.EndpointSlices) > 0 && slices.ContainsFunc(r.HTTPRoutes, func(h *gwv1.HTTPRoute) bool { return h.Namespace == f.ns })
	})
	topts := translate.Options{ControllerName: testController}
	result := translate.Translate(res, topts)
	for _, pr := range result.Problems {
		if pr.Namespace == f.ns {
			t.Errorf("unexpected problem: %v", pr)
		}
	}

	// The translation: the route reaches the EndpointSlice's address, with the
	// Gateway's policy attached; the other class's Gateway is not served.
	routes := routesOf(result.Config, f.port)
	if len(routes) != 1 {
		t.Fatalf("port %d: %d routes, want 1: %+v", f.port, len(routes), result.Config)
	}
	if eps := endpointsOf(routes[0]); !slices.Equal(eps, []ir.Endpoint{{Host: "10.1.2.3", Port: 8080}}) {
		t.Errorf("endpoints %+v, want 10.1.2.3:8080", eps)
	}
	if ep := routes[0].ExtProc; ep == nil || ep.Policy != f.ns+"/extproc" || ep.Spec.FailureMode != v1alpha1.FailClosed {
		t.Errorf("route ext_proc %+v, want policy %s/extproc, FailClosed", ep, f.ns)
	}
	if _, ok := result.Gateways[key("foreign")]; ok {
		t.Error("the other controller's Gateway has a status from Sluice")
	}

	// Status, written once.
	w := NewStatusWriter(c, p.Reader(), StatusOptions{ControllerName: testController, Addresses: []string{"192.0.2.10"}, Logger: quietLogger()})
	n, err := w.Write(ctx, result)
	if err != nil {
		t.Fatalf("writing status: %v", err)
	}
	if n < 4 {
		t.Errorf("%d objects written, want at least 4 (class, gateway, route, policy)", n)
	}
	var gc, other gwv1.GatewayClass
	mustGet(ctx, t, c, types.NamespacedName{Name: f.class}, &gc)
	mustGet(ctx, t, c, types.NamespacedName{Name: f.otherClass}, &other)
	wantTrue(t, "GatewayClass", gc.Status.Conditions, gc.Generation, "Accepted")
	if !equality.Semantic.DeepEqual(gc.Status.SupportedFeatures, translate.SupportedFeatures()) {
		t.Errorf("GatewayClass supportedFeatures %+v, want %+v", gc.Status.SupportedFeatures, translate.SupportedFeatures())
	}
	if cnd := meta.FindStatusCondition(other.Status.Conditions, "Accepted"); cnd != nil && cnd.Status == metav1.ConditionTrue {
		t.Errorf("the other controller's GatewayClass was accepted: %+v", cnd)
	}
	var gw gwv1.Gateway
	mustGet(ctx, t, c, key("gw"), &gw)
	wantTrue(t, "Gateway", gw.Status.Conditions, gw.Generation, "Accepted", "Programmed")
	if len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != "192.0.2.10" || *gw.Status.Addresses[0].Type != gwv1.IPAddressType {
		t.Errorf("Gateway addresses %+v", gw.Status.Addresses)
	}
	if len(gw.Status.Listeners) != 1 || gw.Status.Listeners[0].AttachedRoutes != 1 {
		t.Fatalf("Gateway listeners %+v, want one with 1 attached route", gw.Status.Listeners)
	}
	wantTrue(t, "listener", gw.Status.Listeners[0].Conditions, gw.Generation, "Accepted", "Programmed", "ResolvedRefs")
	var foreign gwv1.Gateway
	mustGet(ctx, t, c, key("foreign"), &foreign)
	if len(foreign.Status.Listeners) != 0 || meta.IsStatusConditionTrue(foreign.Status.Conditions, "Accepted") {
		t.Errorf("the other controller's Gateway got a status: %+v", foreign.Status)
	}
	var route gwv1.HTTPRoute
	mustGet(ctx, t, c, key("route"), &route)
	if len(route.Status.Parents) != 1 || route.Status.Parents[0].ParentRef.Name != "gw" || route.Status.Parents[0].ControllerName != testController {
		t.Fatalf("HTTPRoute parents %+v, want only Sluice's gw", route.Status.Parents)
	}
	wantTrue(t, "HTTPRoute parent", route.Status.Parents[0].Conditions, route.Generation, "Accepted", "ResolvedRefs")
	var pol v1alpha1.TrafficPolicy
	mustGet(ctx, t, c, key("extproc"), &pol)
	if len(pol.Status.Ancestors) != 1 || pol.Status.Ancestors[0].AncestorRef.Name != "gw" {
		t.Fatalf("TrafficPolicy ancestors %+v", pol.Status.Ancestors)
	}
	wantTrue(t, "TrafficPolicy ancestor", pol.Status.Ancestors[0].Conditions, pol.Generation, "Accepted")

	// Another controller's entry on the route survives Sluice's writes.
	theirs := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "foreign"}, ControllerName: "example.com/other",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()}}}
	route.Status.Parents = append(route.Status.Parents, theirs)
	if err := c.Status().Update(ctx, &route); err != nil {
		t.Fatalf("writing the other controller's route status: %v", err)
	}

	// A second pass over an identical translation writes nothing, even though the
	// cache may not have seen the first writes yet.
	before := resourceVersions(ctx, t, c, f)
	n, err = w.Write(ctx, translate.Translate(res, topts))
	if err != nil || n != 0 {
		t.Errorf("second pass: %d writes, err %v; want none", n, err)
	}
	if after := resourceVersions(ctx, t, c, f); !slices.Equal(before, after) {
		t.Errorf("resource versions changed by a no-op pass: %v -> %v", before, after)
	}
	mustGet(ctx, t, c, key("route"), &route)
	if len(route.Status.Parents) != 2 {
		t.Errorf("HTTPRoute parents after the second pass: %+v", route.Status.Parents)
	}

	// A policy edit reaches the translation.
	mustGet(ctx, t, c, key("extproc"), &pol)
	pol.Spec.Traffic.ExtProc.FailureMode = v1alpha1.FailOpen
	if err := c.Update(ctx, &pol); err != nil {
		t.Fatalf("editing the policy: %v", err)
	}
	res = states.waitState(t, "the policy edit", func(r *translate.Resources) bool {
		for _, p := range r.TrafficPolicies {
			if p.Namespace == f.ns && p.Spec.Traffic.ExtProc.FailureMode == v1alpha1.FailOpen {
				return true
			}
		}
		return false
	})
	result = translate.Translate(res, topts)
	if routes := routesOf(result.Config, f.port); len(routes) != 1 || routes[0].ExtProc == nil || routes[0].ExtProc.Spec.FailureMode != v1alpha1.FailOpen {
		t.Errorf("after the edit, routes %+v", routes)
	}
	if _, err := w.Write(ctx, result); err != nil {
		t.Fatalf("writing status after the edit: %v", err)
	}
	mustGet(ctx, t, c, key("extproc"), &pol)
	wantTrue(t, "TrafficPolicy ancestor after the edit", pol.Status.Ancestors[0].Conditions, pol.Generation, "Accepted")

	// An EndpointSlice edit reaches the translation.
	var slice discoveryv1.EndpointSlice
	mustGet(ctx, t, c, key("echo-1"), &slice)
	slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.2.4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}})
	if err := c.Update(ctx, &slice); err != nil {
		t.Fatalf("editing the EndpointSlice: %v", err)
	}
	res = states.waitState(t, "the EndpointSlice edit", func(r *translate.Resources) bool {
		for _, s := range r.EndpointSlices {
			if s.Namespace == f.ns && len(s.Endpoints) == 2 {
				return true
			}
		}
		return false
	})
	if eps := endpointsOf(routesOf(translate.Translate(res, topts).Config, f.port)[0]); len(eps) != 2 {
		t.Errorf("after the EndpointSlice edit, endpoints %+v", eps)
	}

	// Deleting the route removes Sluice's state of it, and the listener counts no route.
	if err := c.Delete(ctx, &route); err != nil {
		t.Fatal(err)
	}
	res = states.waitState(t, "the route deletion", func(r *translate.Resources) bool {
		return !slices.ContainsFunc(r.HTTPRoutes, func(h *gwv1.HTTPRoute) bool { return h.Namespace == f.ns })
	})
	if _, err := w.Write(ctx, translate.Translate(res, topts)); err != nil {
		t.Fatal(err)
	}
	mustGet(ctx, t, c, key("gw"), &gw)
	if gw.Status.Listeners[0].AttachedRoutes != 0 {
		t.Errorf("attachedRoutes %d after the route was deleted", gw.Status.Listeners[0].AttachedRoutes)
	}
}

func mustGet(ctx context.Context, t *testing.T, c client.Client, key types.NamespacedName, obj client.Object) {
	t.Helper()
	if err := c.Get(ctx, key, obj); err != nil {
		t.Fatalf("getting %T %s: %v", obj, key, err)
	}
}

// resourceVersions lists the resourceVersion of every object the status writer may write.
func resourceVersions(ctx context.Context, t *testing.T, c client.Client, f fixture) []string {
	t.Helper()
	objs := []struct {
		key types.NamespacedName
		obj client.Object
	}{
		{types.NamespacedName{Name: f.class}, &gwv1.GatewayClass{}},
		{types.NamespacedName{Namespace: f.ns, Name: "gw"}, &gwv1.Gateway{}},
		{types.NamespacedName{Namespace: f.ns, Name: "foreign"}, &gwv1.Gateway{}},
		{types.NamespacedName{Namespace: f.ns, Name: "route"}, &gwv1.HTTPRoute{}},
		{types.NamespacedName{Namespace: f.ns, Name: "extproc"}, &v1alpha1.TrafficPolicy{}},
	}
	var out []string
	for _, o := range objs {
		mustGet(ctx, t, c, o.key, o.obj)
		out = append(out, o.key.String()+"@"+o.obj.GetResourceVersion())
	}
	return out
}
