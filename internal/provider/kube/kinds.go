package kube

import (
	"cmp"
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// watchedKind is one kind the provider watches and copies into translate.Resources.
type watchedKind struct {
	// name is the translate.Kind* constant, for logs.
	name string
	// obj is a prototype used to ask the cache for the kind's informer.
	obj client.Object
	// optional kinds are skipped, with a warning, when the API server does not serve
	// them (their CRD is not installed). Without GatewayClass, Gateway and HTTPRoute
	// there is nothing to serve, so those are required.
	optional bool
	// hasStatus marks kinds whose status Sluice itself writes: updates that change
	// neither generation, labels nor annotations are status-only and do not trigger a
	// new translation (which would otherwise follow every status write).
	hasStatus bool
	// collect lists the kind from r into res.
	collect func(ctx context.Context, r client.Reader, res *translate.Resources) error
}

// watchedKinds lists every kind a translation reads, in the order they are registered.
func watchedKinds() []watchedKind {
	return []watchedKind{
		{name: translate.KindGatewayClass, obj: &gwv1.GatewayClass{}, hasStatus: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l gwv1.GatewayClassList
				err := r.List(ctx, &l)
				res.GatewayClasses = pointers(l.Items)
				return err
			}},
		{name: translate.KindGateway, obj: &gwv1.Gateway{}, hasStatus: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l gwv1.GatewayList
				err := r.List(ctx, &l)
				res.Gateways = pointers(l.Items)
				return err
			}},
		{name: translate.KindHTTPRoute, obj: &gwv1.HTTPRoute{}, hasStatus: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l gwv1.HTTPRouteList
				err := r.List(ctx, &l)
				res.HTTPRoutes = pointers(l.Items)
				return err
			}},
		{name: translate.KindGRPCRoute, obj: &gwv1.GRPCRoute{}, optional: true, hasStatus: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l gwv1.GRPCRouteList
				err := r.List(ctx, &l)
				res.GRPCRoutes = pointers(l.Items)
				return err
			}},
		// Optional: the ListenerSet CRD is only in the Gateway API's newer bundles.
		{name: translate.KindListenerSet, obj: &gwv1.ListenerSet{}, optional: true, hasStatus: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l gwv1.ListenerSetList
				err := r.List(ctx, &l)
				res.ListenerSets = pointers(l.Items)
				return err
			}},
		{name: translate.KindReferenceGrant, obj: &gwv1beta1.ReferenceGrant{}, optional: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l gwv1beta1.ReferenceGrantList
				err := r.List(ctx, &l)
				res.ReferenceGrants = pointers(l.Items)
				return err
			}},
		{name: translate.KindTrafficPolicy, obj: &v1alpha1.TrafficPolicy{}, optional: true, hasStatus: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l v1alpha1.TrafficPolicyList
				err := r.List(ctx, &l)
				res.TrafficPolicies = pointers(l.Items)
				return err
			}},
		{name: translate.KindBackend, obj: &v1alpha1.Backend{}, optional: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l v1alpha1.BackendList
				err := r.List(ctx, &l)
				res.Backends = pointers(l.Items)
				return err
			}},
		{name: translate.KindService, obj: &corev1.Service{},
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l corev1.ServiceList
				err := r.List(ctx, &l)
				res.Services = pointers(l.Items)
				return err
			}},
		{name: translate.KindEndpointSlice, obj: &discoveryv1.EndpointSlice{},
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l discoveryv1.EndpointSliceList
				err := r.List(ctx, &l)
				res.EndpointSlices = pointers(l.Items)
				return err
			}},
		{name: translate.KindSecret, obj: &corev1.Secret{},
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l corev1.SecretList
				err := r.List(ctx, &l)
				res.Secrets = pointers(l.Items)
				return err
			}},
		{name: translate.KindConfigMap, obj: &corev1.ConfigMap{},
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l corev1.ConfigMapList
				err := r.List(ctx, &l)
				res.ConfigMaps = pointers(l.Items)
				return err
			}},
		{name: translate.KindBackendTLSPolicy, obj: &gwv1.BackendTLSPolicy{}, optional: true, hasStatus: true,
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l gwv1.BackendTLSPolicyList
				err := r.List(ctx, &l)
				res.BackendTLSPolicies = pointers(l.Items)
				return err
			}},
		{name: translate.KindNamespace, obj: &corev1.Namespace{},
			collect: func(ctx context.Context, r client.Reader, res *translate.Resources) error {
				var l corev1.NamespaceList
				err := r.List(ctx, &l)
				res.Namespaces = pointers(l.Items)
				return err
			}},
	}
}

// named is what pointers sorts by.
type named interface {
	GetNamespace() string
	GetName() string
}

// pointers returns pointers to items, sorted by namespace and name so that a translation
// does not depend on the order the cache happens to list them in.
func pointers[T any, PT interface {
	*T
	named
}](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	slices.SortFunc(out, func(a, b *T) int {
		pa, pb := PT(a), PT(b)
		return cmp.Or(cmp.Compare(pa.GetNamespace(), pb.GetNamespace()), cmp.Compare(pa.GetName(), pb.GetName()))
	})
	return out
}
