package file

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	sigsjson "sigs.k8s.io/json"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// kind describes one kind the loader accepts: how to decode it and where it goes.
type kind struct {
	namespaced bool
	newObj     func() any
	add        func(r *translate.Resources, obj any, namespace string)
}

// decode unmarshals js strictly into a new object of the kind, returning one message per
// unknown, duplicated or mistyped field.
func (k kind) decode(js []byte, kindName string) (any, []string) {
	obj := k.newObj()
	strictErrs, err := sigsjson.UnmarshalStrict(js, obj)
	var msgs []string
	for _, e := range strictErrs {
		msgs = append(msgs, cleanStrictError(e.Error(), kindName))
	}
	if err != nil {
		msgs = append(msgs, cleanJSONError(err.Error(), js))
	}
	return obj, msgs
}

const (
	groupGateway = "gateway.networking.k8s.io"
	groupCore    = ""
	groupDisc    = "discovery.k8s.io"
)

// kinds maps group/Kind to the kind, and group to its accepted versions.
var (
	kinds = map[string]kind{
		groupGateway + "/Gateway": {namespaced: true,
			newObj: func() any { return &gwv1.Gateway{} },
			add: func(r *translate.Resources, o any, ns string) {
				g := o.(*gwv1.Gateway)
				g.Namespace = ns
				r.Gateways = append(r.Gateways, g)
			}},
		groupGateway + "/HTTPRoute": {namespaced: true,
			newObj: func() any { return &gwv1.HTTPRoute{} },
			add: func(r *translate.Resources, o any, ns string) {
				h := o.(*gwv1.HTTPRoute)
				h.Namespace = ns
				r.HTTPRoutes = append(r.HTTPRoutes, h)
			}},
		groupGateway + "/GRPCRoute": {namespaced: true,
			newObj: func() any { return &gwv1.GRPCRoute{} },
			add: func(r *translate.Resources, o any, ns string) {
				g := o.(*gwv1.GRPCRoute)
				g.Namespace = ns
				r.GRPCRoutes = append(r.GRPCRoutes, g)
			}},
		groupGateway + "/ListenerSet": {namespaced: true,
			newObj: func() any { return &gwv1.ListenerSet{} },
			add: func(r *translate.Resources, o any, ns string) {
				s := o.(*gwv1.ListenerSet)
				s.Namespace = ns
				r.ListenerSets = append(r.ListenerSets, s)
			}},
		groupGateway + "/GatewayClass": {namespaced: false,
			newObj: func() any { return &gwv1.GatewayClass{} },
			add: func(r *translate.Resources, o any, _ string) {
				r.GatewayClasses = append(r.GatewayClasses, o.(*gwv1.GatewayClass))
			}},
		groupGateway + "/ReferenceGrant": {namespaced: true,
			newObj: func() any { return &gwv1beta1.ReferenceGrant{} },
			add: func(r *translate.Resources, o any, ns string) {
				g := o.(*gwv1beta1.ReferenceGrant)
				g.Namespace = ns
				r.ReferenceGrants = append(r.ReferenceGrants, g)
			}},
		v1alpha1.Group + "/Backend": {namespaced: true,
			newObj: func() any { return &v1alpha1.Backend{} },
			add: func(r *translate.Resources, o any, ns string) {
				b := o.(*v1alpha1.Backend)
				b.Namespace = ns
				r.Backends = append(r.Backends, b)
			}},
		v1alpha1.Group + "/TrafficPolicy": {namespaced: true,
			newObj: func() any { return &v1alpha1.TrafficPolicy{} },
			add: func(r *translate.Resources, o any, ns string) {
				p := o.(*v1alpha1.TrafficPolicy)
				p.Namespace = ns
				r.TrafficPolicies = append(r.TrafficPolicies, p)
			}},
		groupCore + "/Secret": {namespaced: true,
			newObj: func() any { return &corev1.Secret{} },
			add: func(r *translate.Resources, o any, ns string) {
				s := o.(*corev1.Secret)
				s.Namespace = ns
				mergeStringData(s)
				r.Secrets = append(r.Secrets, s)
			}},
		groupGateway + "/BackendTLSPolicy": {namespaced: true,
			newObj: func() any { return &gwv1.BackendTLSPolicy{} },
			add: func(r *translate.Resources, o any, ns string) {
				p := o.(*gwv1.BackendTLSPolicy)
				p.Namespace = ns
				r.BackendTLSPolicies = append(r.BackendTLSPolicies, p)
			}},
		groupCore + "/ConfigMap": {namespaced: true,
			newObj: func() any { return &corev1.ConfigMap{} },
			add: func(r *translate.Resources, o any, ns string) {
				c := o.(*corev1.ConfigMap)
				c.Namespace = ns
				r.ConfigMaps = append(r.ConfigMaps, c)
			}},
		groupCore + "/Service": {namespaced: true,
			newObj: func() any { return &corev1.Service{} },
			add: func(r *translate.Resources, o any, ns string) {
				s := o.(*corev1.Service)
				s.Namespace = ns
				r.Services = append(r.Services, s)
			}},
		groupCore + "/Namespace": {namespaced: false,
			newObj: func() any { return &corev1.Namespace{} },
			add: func(r *translate.Resources, o any, _ string) {
				r.Namespaces = append(r.Namespaces, o.(*corev1.Namespace))
			}},
		groupDisc + "/EndpointSlice": {namespaced: true,
			newObj: func() any { return &discoveryv1.EndpointSlice{} },
			add: func(r *translate.Resources, o any, ns string) {
				s := o.(*discoveryv1.EndpointSlice)
				s.Namespace = ns
				r.EndpointSlices = append(r.EndpointSlices, s)
			}},
	}
	versions = map[string][]string{
		groupGateway:   {"v1", "v1beta1"},
		v1alpha1.Group: {"v1alpha1"},
		groupCore:      {"v1"},
		groupDisc:      {"v1"},
	}
)

// lookupKind finds the kind of apiVersion and kind.
func lookupKind(apiVersion, kindName string) (kind, bool) {
	group, version := splitAPIVersion(apiVersion)
	k, ok := kinds[group+"/"+kindName]
	if !ok {
		return kind{}, false
	}
	for _, v := range versions[group] {
		if v == version {
			return k, true
		}
	}
	return kind{}, false
}

func splitAPIVersion(apiVersion string) (group, version string) {
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		return apiVersion[:i], apiVersion[i+1:]
	}
	return "", apiVersion
}

// unknownKindMessage says what was wrong with apiVersion/kind and what is accepted.
func unknownKindMessage(apiVersion, kindName string) string {
	if apiVersion == "" || kindName == "" {
		return "apiVersion and kind are required"
	}
	group, version := splitAPIVersion(apiVersion)
	if _, ok := kinds[group+"/"+kindName]; ok {
		return fmt.Sprintf("apiVersion: %s %q is not supported, expected one of %s",
			kindName, apiVersion, strings.Join(apiVersions(group), ", "))
	}
	var accepted []string
	for gk := range kinds {
		g, k, _ := strings.Cut(gk, "/")
		accepted = append(accepted, k+" ("+apiVersions(g)[0]+")")
	}
	sort.Strings(accepted)
	_ = version
	return fmt.Sprintf("kind: unknown kind %q of apiVersion %q, expected one of %s",
		kindName, apiVersion, strings.Join(accepted, ", "))
}

func apiVersions(group string) []string {
	var out []string
	for _, v := range versions[group] {
		if group == "" {
			out = append(out, v)
		} else {
			out = append(out, group+"/"+v)
		}
	}
	return out
}

// mergeStringData folds stringData into data, stringData winning, as the API server does on
// write, so the translator only ever reads data.
func mergeStringData(s *corev1.Secret) {
	if len(s.StringData) == 0 {
		return
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}
