package translate_test

import (
	"encoding/json"
	"math/rand"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/provider/file"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// shuffle permutes every list of r with rng.
func shuffle(r *translate.Resources, rng *rand.Rand) {
	v := reflect.ValueOf(r).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() == reflect.Slice {
			rng.Shuffle(f.Len(), reflect.Swapper(f.Interface()))
		}
	}
}

// TestDeterministicWhateverTheOrder translates every golden input with its objects in
// several orders and expects the same output each time.
func TestDeterministicWhateverTheOrder(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	for _, in := range ins {
		res, err := file.Load(in)
		if err != nil {
			t.Fatal(err)
		}
		opts := translate.Options{AllGatewayClasses: true}
		want := render(t, translate.Translate(res, opts))
		for seed := int64(1); seed <= 5; seed++ {
			shuffle(res, rand.New(rand.NewSource(seed)))
			if got := render(t, translate.Translate(res, opts)); string(got) != string(want) {
				t.Errorf("%s: output depends on input order (seed %d)", in, seed)
			}
		}
	}
}

// TestInputUnchanged checks that Translate only reads its input.
func TestInputUnchanged(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	for _, in := range ins {
		a, _ := file.Load(in)
		b, _ := file.Load(in)
		translate.Translate(a, translate.Options{AllGatewayClasses: true})
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: Translate changed its input", in)
		}
	}
}

func TestNilAndEmpty(t *testing.T) {
	for _, r := range []*translate.Resources{nil, {}} {
		res := translate.Translate(r, translate.Options{})
		if res.Config == nil || len(res.Config.Ports) != 0 || len(res.Problems) != 0 {
			t.Errorf("Translate(%v) = %+v", r, res)
		}
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    translate.Problem
		want string
	}{
		{translate.Problem{Kind: "HTTPRoute", Namespace: "default", Name: "web", Origin: "file.yaml#2",
			Field: "spec.rules[0].backendRefs[0]", Message: "backend default/nope not found"},
			"file.yaml#2 (HTTPRoute default/web): spec.rules[0].backendRefs[0]: backend default/nope not found"},
		{translate.Problem{Kind: "Gateway", Namespace: "x", Name: "g", Message: "broken"}, "Gateway x/g: broken"},
		{translate.Problem{Kind: "GatewayClass", Name: "c", Field: "spec", Message: "m"}, "GatewayClass c: spec: m"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestResultJSON(t *testing.T) {
	res, err := file.Load("testdata/basic.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(translate.Translate(res, translate.Options{AllGatewayClasses: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"default/agentgateway-proxy":{`) {
		t.Errorf("statuses not keyed by namespace/name: %s", out)
	}
}

// TestZeroObjects checks that objects with nothing but a name are reported, not a panic.
func TestZeroObjects(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "x", Namespace: "default"}
	r := &translate.Resources{
		GatewayClasses:  []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}},
		Gateways:        []*gwv1.Gateway{{ObjectMeta: meta, Spec: gwv1.GatewaySpec{Listeners: []gwv1.Listener{{}}}}},
		HTTPRoutes:      []*gwv1.HTTPRoute{{ObjectMeta: meta, Spec: gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{}}}, Rules: []gwv1.HTTPRouteRule{{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{}}}, Filters: []gwv1.HTTPRouteFilter{{}}, BackendRefs: []gwv1.HTTPBackendRef{{}}}}}}},
		ReferenceGrants: []*gwv1beta1.ReferenceGrant{{ObjectMeta: meta}},
		Backends:        []*v1alpha1.Backend{{ObjectMeta: meta}},
		TrafficPolicies: []*v1alpha1.TrafficPolicy{{ObjectMeta: meta, Spec: v1alpha1.TrafficPolicySpec{TargetRefs: []gwv1.LocalPolicyTargetReferenceWithSectionName{{}}, Traffic: &v1alpha1.Traffic{ExtProc: &v1alpha1.ExtProc{}}}}},
		Secrets:         []*corev1.Secret{{ObjectMeta: meta}},
		Services:        []*corev1.Service{{ObjectMeta: meta}},
		EndpointSlices:  []*discoveryv1.EndpointSlice{{ObjectMeta: meta, Endpoints: []discoveryv1.Endpoint{{}}, Ports: []discoveryv1.EndpointPort{{}}}},
		Namespaces:      []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "default"}}},
	}
	for _, all := range []bool{true, false} {
		res := translate.Translate(r, translate.Options{AllGatewayClasses: all})
		if all && len(res.Problems) == 0 {
			t.Error("no problems reported for empty objects")
		}
	}
}

// TestSupportedFeaturesSorted: the Gateway API requires supportedFeatures sorted by name,
// and a name listed twice would be rejected by the API server (a map-list keyed by name).
func TestSupportedFeaturesSorted(t *testing.T) {
	fs := translate.SupportedFeatures()
	if len(fs) == 0 {
		t.Fatal("no supported features: the conformance suite refuses an empty list")
	}
	for i := 1; i < len(fs); i++ {
		if fs[i-1].Name >= fs[i].Name {
			t.Errorf("supportedFeatures not sorted or not unique at %d: %q, %q", i, fs[i-1].Name, fs[i].Name)
		}
	}
}
