package translate_test

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// bigResources is one Gateway with n HTTPRoutes, each with its own hostname and two
// rules, to a shared Backend.
func bigResources(n int) *translate.Resources {
	group := gwv1.Group(v1alpha1.Group)
	kind := gwv1.Kind("Backend")
	r := &translate.Resources{
		Gateways: []*gwv1.Gateway{{
			ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "default"},
			Spec:       gwv1.GatewaySpec{Listeners: []gwv1.Listener{{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType}}},
		}},
		Backends: []*v1alpha1.Backend{{
			ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"},
			Spec:       v1alpha1.BackendSpec{Endpoints: []v1alpha1.BackendEndpoint{{Host: "127.0.0.1", Port: 8080}}},
		}},
	}
	ref := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Group: &group, Kind: &kind, Name: "app"}}}
	for i := 0; i < n; i++ {
		path := fmt.Sprintf("/api/%d", i)
		r.HTTPRoutes = append(r.HTTPRoutes, &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r%05d", i), Namespace: "default"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw"}}},
				Hostnames:       []gwv1.Hostname{gwv1.Hostname(fmt.Sprintf("h%d.example.com", i%100))},
				Rules: []gwv1.HTTPRouteRule{
					{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Value: &path}}}, BackendRefs: []gwv1.HTTPBackendRef{ref}},
					{BackendRefs: []gwv1.HTTPBackendRef{ref}},
				},
			},
		})
	}
	return r
}

func BenchmarkTranslate10kRoutes(b *testing.B) {
	r := bigResources(10000)
	b.ReportAllocs()
	for b.Loop() {
		res := translate.Translate(r, translate.Options{AllGatewayClasses: true})
		if len(res.Problems) > 0 {
			b.Fatal(res.Problems[0])
		}
	}
}
