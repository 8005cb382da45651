package translate

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// Translate computes the IR and the status of every object from r. It is pure: r is only
// read, nothing is looked up elsewhere, and equal inputs give equal outputs (every list is
// sorted), whatever the order of the objects in r.
//
// Invalid input never stops translation: each invalid field becomes a Problem and a status
// condition, and what it affects (a listener, a route rule, a backend share, a policy) is
// left out or answered with an error by the data plane, as the Gateway API prescribes.
func Translate(r *Resources, o Options) *Result {
	if r == nil {
		r = &Resources{}
	}
	if o.ControllerName == "" {
		o.ControllerName = DefaultControllerName
	}
	t := newTranslator(r, o)
	t.validateBackends()
	t.translateBackendTLS()
	t.translateGateways()
	t.translateRoutes()
	t.translatePolicies()
	return t.finish()
}

// translator carries the indexes and intermediate state of one Translate call.
type translator struct {
	res  *Resources
	opts Options

	// Indexes of the input, by namespace/name.
	classes    map[string]*gwv1.GatewayClass
	gateways   map[types.NamespacedName]*gwv1.Gateway
	routes     map[types.NamespacedName]*gwv1.HTTPRoute
	backends   map[types.NamespacedName]*v1alpha1.Backend
	secrets    map[types.NamespacedName]*corev1.Secret
	configMaps map[types.NamespacedName]*corev1.ConfigMap
	services   map[types.NamespacedName]*corev1.Service
	slices     map[types.NamespacedName][]*discoveryv1.EndpointSlice // by service
	namespaces map[string]*corev1.Namespace
	grants     []*gwv1beta1.ReferenceGrant

	// ourGateways are the Gateways served, oldest first (ties by namespace/name), which
	// is the order in which they claim ports and hostnames.
	ourGateways []*gatewayState
	gwByName    map[types.NamespacedName]*gatewayState
	// listenerSets are the ListenerSets whose parent Gateway is served, oldest first;
	// setByName indexes them.
	listenerSets []*listenerSetState
	setByName    map[types.NamespacedName]*listenerSetState
	// routeStates are the HTTPRoutes in the same order.
	routeStates []*routeState
	routeByName map[routeRef]*routeState
	policies    []*policyState
	// slots maps an attachment point and phase (see slotPhase) to its winning policy.
	slots map[string]*policyState
	// btls maps each Service (port) to the BackendTLSPolicy that applies to it;
	// btlsStates are every BackendTLSPolicy, in input order.
	btls       map[btlsTarget]*btlsState
	btlsStates []*btlsState
	// policyTLS marks the backends reached over TLS because of a BackendTLSPolicy: those
	// that present a Gateway's spec.tls.backend client certificate.
	policyTLS map[*ir.Backend]bool
	// backendCache memoises the validation of Backends, so each is reported once.
	backendCache map[types.NamespacedName]backendEntry

	result   *Result
	problems []Problem
}

func newTranslator(r *Resources, o Options) *translator {
	t := &translator{
		res:         r,
		opts:        o,
		classes:     map[string]*gwv1.GatewayClass{},
		gateways:    map[types.NamespacedName]*gwv1.Gateway{},
		routes:      map[types.NamespacedName]*gwv1.HTTPRoute{},
		backends:    map[types.NamespacedName]*v1alpha1.Backend{},
		secrets:     map[types.NamespacedName]*corev1.Secret{},
		configMaps:  map[types.NamespacedName]*corev1.ConfigMap{},
		services:    map[types.NamespacedName]*corev1.Service{},
		slices:      map[types.NamespacedName][]*discoveryv1.EndpointSlice{},
		namespaces:  map[string]*corev1.Namespace{},
		gwByName:    map[types.NamespacedName]*gatewayState{},
		setByName:   map[types.NamespacedName]*listenerSetState{},
		routeByName: map[routeRef]*routeState{},
		policyTLS:   map[*ir.Backend]bool{},
		result: &Result{
			Config:             &ir.Config{Ports: []*ir.Port{}},
			Gateways:           map[types.NamespacedName]*gwv1.GatewayStatus{},
			HTTPRoutes:         map[types.NamespacedName]*gwv1.HTTPRouteStatus{},
			GRPCRoutes:         map[types.NamespacedName]*gwv1.GRPCRouteStatus{},
			Policies:           map[types.NamespacedName]*gwv1.PolicyStatus{},
			BackendTLSPolicies: map[types.NamespacedName]*gwv1.PolicyStatus{},
			ListenerSets:       map[types.NamespacedName]*gwv1.ListenerSetStatus{},
			Addresses:          map[types.NamespacedName][]netip.Addr{},
		},
	}
	for _, c := range r.GatewayClasses {
		t.classes[c.Name] = c
	}
	for _, g := range r.Gateways {
		t.gateways[key(g)] = g
	}
	for _, h := range r.HTTPRoutes {
		t.routes[key(h)] = h
	}
	for _, b := range r.Backends {
		t.backends[key(b)] = b
	}
	for _, s := range r.Secrets {
		t.secrets[key(s)] = s
	}
	for _, c := range r.ConfigMaps {
		t.configMaps[key(c)] = c
	}
	for _, s := range r.Services {
		t.services[key(s)] = s
	}
	for _, s := range r.EndpointSlices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		k := types.NamespacedName{Namespace: s.Namespace, Name: svc}
		t.slices[k] = append(t.slices[k], s)
	}
	for _, list := range t.slices {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	for _, n := range r.Namespaces {
		t.namespaces[n.Name] = n
	}
	t.grants = append(t.grants, r.ReferenceGrants...)
	return t
}

// routeRef names a route: an HTTPRoute and a GRPCRoute may share a namespace/name.
type routeRef struct {
	kind string
	key  types.NamespacedName
}

// key is the namespace/name of an object.
func key(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// olderFirst orders objects by creation time, then namespace/name: the order the Gateway
// API uses to break ties between objects.
func olderFirst(a, b metav1.Object) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	if a.GetNamespace() != b.GetNamespace() {
		return a.GetNamespace() < b.GetNamespace()
	}
	return a.GetName() < b.GetName()
}

// validateBackends checks every Backend up front, so that one nobody references still
// has its problems reported.
func (t *translator) validateBackends() {
	bs := append([]*v1alpha1.Backend(nil), t.res.Backends...)
	sort.Slice(bs, func(i, j int) bool { return key(bs[i]).String() < key(bs[j]).String() })
	for _, b := range bs {
		t.validBackend(b)
	}
}

// problem records one invalid field of the object kind ns/name and returns the message,
// for use in a condition.
func (t *translator) problem(kind, ns, name, fieldPath, msg string) string {
	t.problems = append(t.problems, Problem{
		Kind: kind, Namespace: ns, Name: name,
		Origin: t.res.Origin(kind, ns, name),
		Field:  fieldPath, Message: msg,
	})
	if fieldPath == "" {
		return msg
	}
	return fieldPath + ": " + msg
}

// finish assembles the IR and statuses once every object has been translated.
func (t *translator) finish() *Result {
	t.buildConfig()
	t.writeListenerSetStatuses()
	t.writeGatewayStatuses()
	t.writeRouteStatuses()
	t.writePolicyStatuses()
	t.writeBackendTLSStatuses()
	sortProblems(t.problems)
	t.result.Problems = t.problems
	return t.result
}

// sortProblems orders problems by where their objects came from (file, then document
// number), so they read in the order of the configuration. Problems of one object, and of
// objects without an origin (last), keep the order in which translation found them.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		fi, di := splitOrigin(ps[i].Origin)
		fj, dj := splitOrigin(ps[j].Origin)
		if (fi == "") != (fj == "") {
			return fi != ""
		}
		if fi != fj {
			return fi < fj
		}
		return di < dj
	})
}

// splitOrigin splits "path#3" (or "path#3.items[1]") into "path" and 3.
func splitOrigin(o string) (string, int) {
	i := strings.LastIndexByte(o, '#')
	if i < 0 {
		return o, 0
	}
	digits := o[i+1:]
	if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
		digits = digits[:j]
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return o, 0
	}
	return o[:i], n
}
