package translate

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// DefaultControllerName is the GatewayClass controllerName Sluice answers to when
// Options.ControllerName is empty.
const DefaultControllerName = "gateway.sluice.dev/controller"

// The kinds Resources holds, as used in ObjectKey.Kind and Problem.Kind.
const (
	KindGatewayClass   = "GatewayClass"
	KindGateway        = "Gateway"
	KindHTTPRoute      = "HTTPRoute"
	KindGRPCRoute      = "GRPCRoute"
	KindReferenceGrant = "ReferenceGrant"
	KindBackend        = "Backend"
	KindTrafficPolicy  = "TrafficPolicy"
	KindSecret         = "Secret"
	KindService        = "Service"
	KindEndpointSlice  = "EndpointSlice"
	KindNamespace      = "Namespace"
	KindConfigMap      = "ConfigMap"
	// KindBackendTLSPolicy is gateway.networking.k8s.io/v1 BackendTLSPolicy.
	KindBackendTLSPolicy = "BackendTLSPolicy"
	// KindListenerSet is gateway.networking.k8s.io/v1 ListenerSet: listeners added to a
	// Gateway that allows them (spec.allowedListeners).
	KindListenerSet = "ListenerSet"
)

// ObjectKey names one object of Resources. Namespace is empty for cluster-scoped kinds
// (GatewayClass, Namespace).
type ObjectKey struct {
	Kind      string
	Namespace string
	Name      string
}

// String is "Kind namespace/name", or "Kind name" when cluster-scoped.
func (k ObjectKey) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// Resources is everything a provider collected. File mode and Kubernetes mode fill the same
// value; Translate never changes it.
type Resources struct {
	GatewayClasses []*gwv1.GatewayClass
	Gateways       []*gwv1.Gateway
	// ListenerSets add listeners to the Gateways whose spec.allowedListeners admit them.
	ListenerSets []*gwv1.ListenerSet
	HTTPRoutes   []*gwv1.HTTPRoute
	// GRPCRoutes are served as the HTTPRoutes they amount to (see lowerGRPCRoute).
	GRPCRoutes      []*gwv1.GRPCRoute
	ReferenceGrants []*gwv1beta1.ReferenceGrant
	Backends        []*v1alpha1.Backend
	TrafficPolicies []*v1alpha1.TrafficPolicy
	Secrets         []*corev1.Secret
	// ConfigMaps supply CA bundles (key ca.crt) to BackendTLSPolicies and Backends.
	ConfigMaps     []*corev1.ConfigMap
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// BackendTLSPolicies make Sluice speak TLS to the Services they target.
	BackendTLSPolicies []*gwv1.BackendTLSPolicy
	// Namespaces supply the labels that allowedRoutes namespace selectors match. A
	// namespace missing here is taken to carry only the kubernetes.io/metadata.name label
	// that Kubernetes puts on every namespace, so selectors on it work in file mode too.
	Namespaces []*corev1.Namespace

	// Origins say where each object came from ("path/file.yaml#3" in file mode), for
	// messages. Objects without an entry are reported without an origin.
	Origins map[ObjectKey]string
}

// Origin returns where the object kind/namespace/name came from, or "".
func (r *Resources) Origin(kind, namespace, name string) string {
	if r == nil || r.Origins == nil {
		return ""
	}
	return r.Origins[ObjectKey{Kind: kind, Namespace: namespace, Name: name}]
}

// Options tune Translate.
type Options struct {
	// ControllerName is the GatewayClass spec.controllerName whose Gateways are served.
	// Default DefaultControllerName.
	ControllerName string
	// AllGatewayClasses serves every Gateway whatever its class (file mode, where there is
	// nobody else to serve them). It also reports parentRefs to Gateways that do not exist,
	// which in Kubernetes mode could belong to another controller.
	AllGatewayClasses bool
	// Gateways, when not empty, narrows the Gateways served to these (of Sluice's class,
	// or of any class with AllGatewayClasses): a per-Gateway deployment. The other
	// Gateways are treated like another controller's: routes and policies attached to
	// them get no status entry from this translation. Default: every Gateway of the class.
	Gateways []types.NamespacedName
	// AddressPool, when not empty, gives each served Gateway an IP address of its own from
	// these (in this order), on which its listeners bind and which its status.addresses
	// reports: Gateways then never conflict over ports, as with one load balancer address
	// each. Gateways may ask for pool addresses in spec.addresses (a value for a given
	// one, an empty value for any). A Gateway that gets none is Programmed=False
	// (AddressNotAssigned, AddressNotUsable) and not served. The addresses must be
	// assigned to the host. Default: none; every Gateway is served on the bind address.
	AddressPool []netip.Addr
	// StickyAddresses are the addresses the previous translation gave each Gateway (its
	// Result.Addresses): a Gateway keeps its address while it is free, whatever comes
	// and goes. Gateways not listed keep the pool address their status reports, if free.
	StickyAddresses map[types.NamespacedName][]netip.Addr
}

// Owns reports whether a status entry whose reference is ref, on an object in namespace
// ns, belongs to the Gateways o selects: every entry when o selects no Gateways, and
// every entry that does not name a Gateway (a policy reported against its own target).
// The status writer keeps the entries of Sluice's controller it does not own, which
// another per-Gateway deployment wrote.
func (o Options) Owns(ref gwv1.ParentReference, ns string) bool {
	if len(o.Gateways) == 0 {
		return true
	}
	if (ref.Group != nil && *ref.Group != gwv1.GroupName) || (ref.Kind != nil && *ref.Kind != KindGateway) {
		return true
	}
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	return o.selects(types.NamespacedName{Namespace: ns, Name: string(ref.Name)})
}

// selects reports whether Gateway k is among those o narrows serving to.
func (o Options) selects(k types.NamespacedName) bool {
	if len(o.Gateways) == 0 {
		return true
	}
	for _, g := range o.Gateways {
		if g == k {
			return true
		}
	}
	return false
}

// Result is what Translate produced.
type Result struct {
	// Config is the IR of every accepted listener and route. Never nil.
	Config *ir.Config `json:"config"`
	// Gateways, HTTPRoutes and Policies hold the status of every object Sluice serves,
	// keyed by namespace/name. Condition times are left zero: the status writer sets them.
	Gateways   map[types.NamespacedName]*gwv1.GatewayStatus   `json:"gateways,omitempty"`
	HTTPRoutes map[types.NamespacedName]*gwv1.HTTPRouteStatus `json:"httpRoutes,omitempty"`
	GRPCRoutes map[types.NamespacedName]*gwv1.GRPCRouteStatus `json:"grpcRoutes,omitempty"`
	Policies   map[types.NamespacedName]*gwv1.PolicyStatus    `json:"policies,omitempty"`
	// BackendTLSPolicies holds the status of every BackendTLSPolicy a served Gateway uses.
	BackendTLSPolicies map[types.NamespacedName]*gwv1.PolicyStatus `json:"backendTLSPolicies,omitempty"`
	// ListenerSets holds the status of every ListenerSet whose parent Gateway is served.
	ListenerSets map[types.NamespacedName]*gwv1.ListenerSetStatus `json:"listenerSets,omitempty"`
	// Problems lists every invalid field of every object. It is empty if and only if the
	// configuration is fully valid.
	Problems []Problem `json:"problems,omitempty"`
	// Addresses are the pool addresses given to each Gateway (see Options.AddressPool);
	// the next translation's Options.StickyAddresses. Empty without a pool.
	Addresses map[types.NamespacedName][]netip.Addr `json:"-"`
}

// MarshalJSON writes the statuses keyed by "namespace/name": encoding/json cannot use
// types.NamespacedName as a map key, and /config serves a Result as JSON.
func (r *Result) MarshalJSON() ([]byte, error) {
	type view struct {
		Config       *ir.Config                         `json:"config"`
		Gateways     map[string]*gwv1.GatewayStatus     `json:"gateways,omitempty"`
		HTTPRoutes   map[string]*gwv1.HTTPRouteStatus   `json:"httpRoutes,omitempty"`
		GRPCRoutes   map[string]*gwv1.GRPCRouteStatus   `json:"grpcRoutes,omitempty"`
		Policies     map[string]*gwv1.PolicyStatus      `json:"policies,omitempty"`
		BackendTLS   map[string]*gwv1.PolicyStatus      `json:"backendTLSPolicies,omitempty"`
		ListenerSets map[string]*gwv1.ListenerSetStatus `json:"listenerSets,omitempty"`
		Problems     []Problem                          `json:"problems,omitempty"`
	}
	v := view{Config: r.Config, Problems: r.Problems,
		Gateways: stringKeys(r.Gateways), HTTPRoutes: stringKeys(r.HTTPRoutes), GRPCRoutes: stringKeys(r.GRPCRoutes), Policies: stringKeys(r.Policies),
		BackendTLS: stringKeys(r.BackendTLSPolicies), ListenerSets: stringKeys(r.ListenerSets)}
	return json.Marshal(v)
}

func stringKeys[V any](m map[types.NamespacedName]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k.String()] = v
	}
	return out
}

// Problem is one invalid field of one object.
type Problem struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Origin is where the object came from, if known ("path/file.yaml#2").
	Origin string `json:"origin,omitempty"`
	// Field is the path of the offending field ("spec.rules[0].backendRefs[1]"), or empty
	// when the problem is the object as a whole.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// String is "origin (Kind namespace/name): field: message", leaving out what is unknown:
// the same form as the file provider's decoding errors.
func (p Problem) String() string {
	var b strings.Builder
	obj := ObjectKey{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}.String()
	if p.Origin != "" {
		b.WriteString(p.Origin)
		b.WriteString(" (")
		b.WriteString(obj)
		b.WriteString("): ")
	} else {
		b.WriteString(obj)
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error makes a Problem usable as an error.
func (p Problem) Error() string { return p.String() }

// nn formats namespace/name.
func nn(namespace, name string) string { return fmt.Sprintf("%s/%s", namespace, name) }
