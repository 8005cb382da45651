package v1alpha1_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// crdFiles are the generated CRDs, by kind, relative to this package.
var crdFiles = map[string]string{
	"Backend":       "../../config/crd/gateway.sluice.dev_backends.yaml",
	"TrafficPolicy": "../../config/crd/gateway.sluice.dev_trafficpolicies.yaml",
}

func loadCRD(t *testing.T, kind string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile(crdFiles[kind])
	if err != nil {
		t.Fatalf("%v (run hack/generate.sh)", err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		t.Fatalf("%s: %v", crdFiles[kind], err)
	}
	return crd
}

func TestCRDsDescribeTheKinds(t *testing.T) {
	for kind, plural := range map[string]string{"Backend": "backends", "TrafficPolicy": "trafficpolicies"} {
		t.Run(kind, func(t *testing.T) {
			crd := loadCRD(t, kind)
			if crd.APIVersion != "apiextensions.k8s.io/v1" || crd.Kind != "CustomResourceDefinition" {
				t.Errorf("apiVersion/kind = %s/%s", crd.APIVersion, crd.Kind)
			}
			if want := plural + "." + v1alpha1.Group; crd.Name != want {
				t.Errorf("name = %q, want %q", crd.Name, want)
			}
			if crd.Spec.Group != v1alpha1.GroupVersion.Group {
				t.Errorf("group = %q", crd.Spec.Group)
			}
			n := crd.Spec.Names
			if n.Kind != kind || n.ListKind != kind+"List" || n.Plural != plural {
				t.Errorf("names = %+v", n)
			}
			if !slices.Contains(n.Categories, "sluice") {
				t.Errorf("categories = %v, want sluice among them", n.Categories)
			}
			if crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
				t.Errorf("scope = %q", crd.Spec.Scope)
			}
			if len(crd.Spec.Versions) != 1 {
				t.Fatalf("%d versions, want 1", len(crd.Spec.Versions))
			}
			v := crd.Spec.Versions[0]
			if v.Name != v1alpha1.GroupVersion.Version || !v.Served || !v.Storage {
				t.Errorf("version %q served=%v storage=%v", v.Name, v.Served, v.Storage)
			}
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				t.Fatal("no openAPIV3Schema")
			}
			props := v.Schema.OpenAPIV3Schema.Properties
			if _, ok := props["spec"]; !ok {
				t.Error("schema has no spec")
			}
			hasStatus := v.Subresources != nil && v.Subresources.Status != nil
			if want := kind == "TrafficPolicy"; hasStatus != want {
				t.Errorf("status subresource = %v, want %v", hasStatus, want)
			}
			if _, ok := props["status"]; ok != hasStatus {
				t.Errorf("status in schema = %v, want %v", ok, hasStatus)
			}
		})
	}
}

// TestCRDsPassAPIServerValidation runs the checks the API server makes when a CRD is
// created: structural schema, CEL rules that compile, and rule costs within budget.
func TestCRDsPassAPIServerValidation(t *testing.T) {
	for kind := range crdFiles {
		t.Run(kind, func(t *testing.T) {
			crd := toInternal(t, loadCRD(t, kind))
			// The API server records the stored version itself on create.
			crd.Status.StoredVersions = []string{v1alpha1.GroupVersion.Version}
			for _, e := range crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd) {
				t.Error(e)
			}
		})
	}
}

func toInternal(t *testing.T, in *apiextensionsv1.CustomResourceDefinition) *apiextensions.CustomResourceDefinition {
	t.Helper()
	out := &apiextensions.CustomResourceDefinition{}
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(in, out, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// rules collects every x-kubernetes-validations rule of a schema, keyed by message.
func rules(s *apiextensionsv1.JSONSchemaProps, into map[string]string) {
	if s == nil {
		return
	}
	for _, r := range s.XValidations {
		into[r.Message] = r.Rule
	}
	for _, p := range s.Properties {
		rules(&p, into)
	}
	if s.Items != nil {
		rules(s.Items.Schema, into)
	}
	if s.AdditionalProperties != nil {
		rules(s.AdditionalProperties.Schema, into)
	}
}

func TestCRDsCarryTheCELRules(t *testing.T) {
	want := map[string][]string{
		"Backend": {"tls is only used with appProtocol https"},
		"TrafficPolicy": {
			"targetRefs must name gateway.networking.k8s.io Gateways, HTTPRoutes or GRPCRoutes",
			"phase PreRouting applies to Gateway targets only: the route is not known before routing",
			"backendRef is required unless disabled is true",
			"failureMode FailOpen cannot be combined with a FullDuplexStreamed body mode",
			"body modes must be None or Streamed when observabilityMode is true",
			"requestBodyMode FullDuplexStreamed needs requestTrailerMode Send",
			"responseBodyMode FullDuplexStreamed needs responseTrailerMode Send",
			"allowedOverrideModes must be empty unless allowModeOverride is true",
			"must be greater than 0 (for example 1Mi)",
			"Must have port for Service reference", // from Gateway API's BackendObjectReference
		},
	}
	for kind, msgs := range want {
		got := map[string]string{}
		rules(loadCRD(t, kind).Spec.Versions[0].Schema.OpenAPIV3Schema, got)
		for _, m := range msgs {
			if got[m] == "" {
				t.Errorf("%s: no CEL rule with message %q; have %v", kind, m, slices.Sorted(mapsKeys(got)))
			}
		}
	}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestCRDCopiesMatch checks that deploy/crds and the chart carry the CRDs of config/crd
// (hack/generate.sh copies them; hack/verify-generated.sh checks the whole set in CI).
func TestCRDCopiesMatch(t *testing.T) {
	for _, f := range crdFiles {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{"../../deploy/crds", "../../charts/sluice/crds"} {
			got, err := os.ReadFile(filepath.Join(dir, filepath.Base(f)))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s/%s differs from %s or is missing (%v): run hack/generate.sh", dir, filepath.Base(f), f, err)
			}
		}
	}
}

// validator checks objects the way the API server does on create: schema defaults
// applied, then the OpenAPI schema (types, enums, patterns, bounds, required), then the
// CEL rules.
type validator struct {
	schema     apiservervalidation.SchemaValidator
	structural *structuralschema.Structural
	cel        *cel.Validator
}

func newValidator(t *testing.T, kind string) *validator {
	t.Helper()
	crd := toInternal(t, loadCRD(t, kind))
	// With a single version, the internal form holds the schema at the top level.
	props := crd.Spec.Validation.OpenAPIV3Schema
	sv, _, err := apiservervalidation.NewSchemaValidator(props)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := structuralschema.NewStructural(props)
	if err != nil {
		t.Fatal(err)
	}
	return &validator{sv, ss, cel.NewValidator(ss, true, celconfig.PerCallLimit)}
}

func (v *validator) validate(t *testing.T, doc string) []string {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		t.Fatal(err)
	}
	structuraldefaulting.Default(obj, v.structural)
	var msgs []string
	for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, v.schema) {
		msgs = append(msgs, e.Error())
	}
	errs, remaining := v.cel.Validate(context.Background(), nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	if remaining < 0 {
		t.Errorf("CEL cost budget exceeded")
	}
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

const policyHead = `apiVersion: gateway.sluice.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: p, namespace: default}
`

func TestTrafficPolicyValidation(t *testing.T) {
	v := newValidator(t, "TrafficPolicy")
	gw := "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n"
	route := "  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: rule-1}]\n"
	ep := func(extra string) string {
		return "  traffic:\n    extProc:\n      backendRef: {name: ext-proc-grpc, port: 4444}\n" + extra
	}
	tests := []struct {
		name, spec string
		wantErr    string // "" = accepted
	}{
		{"documented example", gw + ep(""), ""},
		{"route rule target", route + ep(""), ""},
		{"GRPCRoute target", "  targetRefs: [{group: gateway.networking.k8s.io, kind: GRPCRoute, name: g}]\n" + ep(""), ""},
		{"everything set", gw + ep(`      failureMode: FailClosed
      statusOnError: 503
      messageTimeout: 1.5s
      maxMessageTimeout: 1m30s
      maxBufferSize: 64Ki
      routeCacheAction: Clear
      headerValueField: Both
      processingOptions:
        requestBodyMode: FullDuplexStreamed
        requestTrailerMode: Send
        responseBodyMode: BufferedPartial
        allowModeOverride: true
        allowedOverrideModes:
        - {requestBodyMode: Streamed}
        - {responseBodyMode: FullDuplexStreamed, responseTrailerMode: Send}
`), ""},
		{"PreRouting on a Gateway", gw + ep("    phase: PreRouting\n"), ""},
		{"disabled without backendRef", gw + "  traffic:\n    extProc: {disabled: true}\n", ""},
		{"no targets", "  targetRefs: []\n" + ep(""), "should have at least 1 items"},
		{"missing targetRefs", ep(""), "targetRefs: Required value"},
		{"Service target", "  targetRefs: [{group: '', kind: Service, name: s}]\n" + ep(""), "Gateways, HTTPRoutes or GRPCRoutes"},
		{"other group", "  targetRefs: [{group: example.com, kind: Gateway, name: s}]\n" + ep(""), "Gateways, HTTPRoutes or GRPCRoutes"},
		{"PreRouting on a route", route + ep("    phase: PreRouting\n"), "PreRouting applies to Gateway targets only"},
		{"PreRouting on a Gateway and a route", "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n  - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}\n" + ep("    phase: PreRouting\n"), "PreRouting applies to Gateway targets only"},
		{"unknown phase", gw + ep("    phase: Early\n"), "Unsupported value: \"Early\""},
		{"no backendRef", gw + "  traffic:\n    extProc: {failureMode: FailOpen}\n", "backendRef is required unless disabled is true"},
		{"Service without port", gw + "  traffic:\n    extProc:\n      backendRef: {name: ext-proc-grpc}\n", "Must have port for Service reference"},
		{"unknown failureMode", gw + ep("      failureMode: Maybe\n"), "Unsupported value: \"Maybe\""},
		{"statusOnError too low", gw + ep("      statusOnError: 100\n"), "statusOnError: Invalid value"},
		{"statusOnError too high", gw + ep("      statusOnError: 600\n"), "statusOnError: Invalid value"},
		{"negative messageTimeout", gw + ep("      messageTimeout: -1s\n"), "messageTimeout in body should match"},
		{"garbage maxMessageTimeout", gw + ep("      maxMessageTimeout: soon\n"), "maxMessageTimeout in body should match"},
		{"zero maxBufferSize", gw + ep("      maxBufferSize: \"0\"\n"), "must be greater than 0"},
		{"integer zero maxBufferSize", gw + ep("      maxBufferSize: 0\n"), "must be greater than 0"},
		{"integer maxBufferSize", gw + ep("      maxBufferSize: 1048576\n      messageTimeout: \"0\"\n      maxMessageTimeout: 200ms\n"), ""},
		{"negative maxBufferSize", gw + ep("      maxBufferSize: -1Mi\n"), "must be greater than 0"},
		{"unknown body mode", gw + ep("      processingOptions: {requestBodyMode: All}\n"), "Unsupported value: \"All\""},
		{"FailOpen with full duplex", gw + ep("      failureMode: FailOpen\n      processingOptions: {responseBodyMode: FullDuplexStreamed, responseTrailerMode: Send}\n"),
			"failureMode FailOpen cannot be combined with a FullDuplexStreamed body mode"},
		{"full duplex without trailers", gw + ep("      processingOptions: {requestBodyMode: FullDuplexStreamed}\n"),
			"requestBodyMode FullDuplexStreamed needs requestTrailerMode Send"},
		{"full duplex with trailers skipped", gw + ep("      processingOptions: {responseBodyMode: FullDuplexStreamed, responseTrailerMode: Skip}\n"),
			"responseBodyMode FullDuplexStreamed needs responseTrailerMode Send"},
		{"override mode full duplex without trailers", gw + ep("      processingOptions:\n        allowModeOverride: true\n        allowedOverrideModes: [{requestBodyMode: FullDuplexStreamed}]\n"),
			"requestBodyMode FullDuplexStreamed needs requestTrailerMode Send"},
		{"override modes without allowModeOverride", gw + ep("      processingOptions:\n        allowedOverrideModes: [{requestBodyMode: Streamed}]\n"),
			"allowedOverrideModes must be empty unless allowModeOverride is true"},
		{"observability with buffered body", gw + ep("      observabilityMode: true\n      processingOptions: {requestBodyMode: Buffered}\n"),
			"body modes must be None or Streamed when observabilityMode is true"},
		{"observability with streamed body", gw + ep("      observabilityMode: true\n      processingOptions: {requestBodyMode: Streamed, responseBodyMode: None}\n"), ""},
		{"unknown routeCacheAction", gw + ep("      routeCacheAction: Sometimes\n"), "Unsupported value: \"Sometimes\""},
		{"unknown headerValueField", gw + ep("      headerValueField: Text\n"), "Unsupported value: \"Text\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := v.validate(t, policyHead+"spec:\n"+tc.spec)
			if tc.wantErr == "" {
				if len(errs) != 0 {
					t.Errorf("rejected: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tc.wantErr) }) {
				t.Errorf("errors %q, want one containing %q", errs, tc.wantErr)
			}
		})
	}
}

func TestBackendValidation(t *testing.T) {
	v := newValidator(t, "Backend")
	head := "apiVersion: gateway.sluice.dev/v1alpha1\nkind: Backend\nmetadata: {name: b, namespace: default}\nspec:\n"
	tests := []struct{ name, spec, wantErr string }{
		{"plain", "  endpoints: [{host: 10.0.0.1, port: 8080}]\n", ""},
		{"https with tls", "  endpoints: [{host: api.example.com, port: 443}]\n  appProtocol: https\n  tls: {sni: api.example.com, caCertificateRefs: [{name: ca}]}\n", ""},
		{"h2c", "  endpoints: [{host: proc, port: 18080}]\n  appProtocol: kubernetes.io/h2c\n", ""},
		{"no endpoints", "  endpoints: []\n", "should have at least 1 items"},
		{"empty host", "  endpoints: [{host: '', port: 80}]\n", "host in body should be at least 1 chars long"},
		{"port 0", "  endpoints: [{host: a, port: 0}]\n", "port in body should be greater than or equal to 1"},
		{"port too big", "  endpoints: [{host: a, port: 70000}]\n", "port in body should be less than or equal to 65535"},
		{"unknown protocol", "  endpoints: [{host: a, port: 1}]\n  appProtocol: ftp\n", "Unsupported value: \"ftp\""},
		{"tls without https", "  endpoints: [{host: a, port: 1}]\n  tls: {sni: a}\n", "tls is only used with appProtocol https"},
		{"bad ref kind", "  endpoints: [{host: a, port: 1}]\n  appProtocol: https\n  tls: {clientCertificateRef: {kind: Pod, name: x}}\n", "Unsupported value: \"Pod\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := v.validate(t, head+tc.spec)
			if tc.wantErr == "" {
				if len(errs) != 0 {
					t.Errorf("rejected: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tc.wantErr) }) {
				t.Errorf("errors %q, want one containing %q", errs, tc.wantErr)
			}
		})
	}
}

// TestExampleManifestsValidate checks the Sluice objects of examples/kubernetes against
// the CRDs.
func TestExampleManifestsValidate(t *testing.T) {
	files, err := filepath.Glob("../../examples/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example manifests: %v", err)
	}
	validators := map[string]*validator{}
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if meta.APIVersion != v1alpha1.GroupVersion.String() {
				continue
			}
			if validators[meta.Kind] == nil {
				validators[meta.Kind] = newValidator(t, meta.Kind)
			}
			seen++
			for _, e := range validators[meta.Kind].validate(t, doc) {
				t.Errorf("%s: %s", f, e)
			}
		}
	}
	if seen == 0 {
		t.Error("no gateway.sluice.dev objects in examples/kubernetes")
	}
}

func TestSchemeRegistersKinds(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for kind, obj := range map[string]runtime.Object{
		"Backend": &v1alpha1.Backend{}, "BackendList": &v1alpha1.BackendList{},
		"TrafficPolicy": &v1alpha1.TrafficPolicy{}, "TrafficPolicyList": &v1alpha1.TrafficPolicyList{},
	} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil || len(gvks) != 1 || gvks[0] != v1alpha1.GroupVersion.WithKind(kind) {
			t.Errorf("%T: kinds %v, %v", obj, gvks, err)
		}
		if _, err := s.New(v1alpha1.GroupVersion.WithKind(kind)); err != nil {
			t.Errorf("New(%s): %v", kind, err)
		}
	}
	if got := v1alpha1.Resource("trafficpolicies"); got != (schema.GroupResource{Group: v1alpha1.Group, Resource: "trafficpolicies"}) {
		t.Errorf("Resource = %v", got)
	}
}

func ptr[T any](v T) *T { return &v }

func fullPolicy() *v1alpha1.TrafficPolicy {
	section := gwv1.SectionName("http")
	ns := gwv1.Namespace("procs")
	q := resource.MustParse("2Mi")
	return &v1alpha1.TrafficPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "TrafficPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"a": "b"}},
		Spec: v1alpha1.TrafficPolicySpec{
			TargetRefs: []gwv1.LocalPolicyTargetReferenceWithSectionName{{
				LocalPolicyTargetReference: gwv1.LocalPolicyTargetReference{Group: gwv1.GroupName, Kind: "Gateway", Name: "gw"},
				SectionName:                &section,
			}},
			Traffic: &v1alpha1.Traffic{
				Phase: v1alpha1.PhasePreRouting,
				ExtProc: &v1alpha1.ExtProc{
					BackendRef:        gwv1.BackendObjectReference{Name: "proc", Namespace: &ns, Port: ptr(gwv1.PortNumber(4444))},
					StatusOnError:     ptr(int32(503)),
					MessageTimeout:    &metav1.Duration{Duration: time.Second},
					MaxMessageTimeout: &metav1.Duration{Duration: time.Minute},
					MaxBufferSize:     &q,
					ProcessingOptions: &v1alpha1.ProcessingOptions{
						RequestBodyMode:      v1alpha1.BodyStreamed,
						AllowModeOverride:    true,
						AllowedOverrideModes: []v1alpha1.ProcessingMode{{RequestBodyMode: v1alpha1.BodyBuffered}},
					},
					MutationRules:       &v1alpha1.MutationRules{AllowExpression: "x-.*"},
					ForwardRules:        &v1alpha1.ForwardRules{AllowedHeaders: []string{"a"}, DisallowedHeaders: []string{"b"}},
					RequestAttributes:   map[string]string{"p": "request.path"},
					ResponseAttributes:  map[string]string{"c": "response.code"},
					MetadataContext:     map[string]map[string]string{"ns": {"k": "request.id"}},
					GRPCInitialMetadata: map[string]string{"k": "v"},
				},
			},
		},
		Status: gwv1.PolicyStatus{Ancestors: []gwv1.PolicyAncestorStatus{{
			AncestorRef:    gwv1.ParentReference{Name: "gw"},
			ControllerName: "gateway.sluice.dev/controller",
			Conditions:     []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"}},
		}}},
	}
}

func fullBackend() *v1alpha1.Backend {
	return &v1alpha1.Backend{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Backend"},
		ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "default"},
		Spec: v1alpha1.BackendSpec{
			Endpoints:   []v1alpha1.BackendEndpoint{{Host: "a", Port: 1}},
			AppProtocol: v1alpha1.AppProtocolHTTPS,
			TLS: &v1alpha1.BackendTLS{
				SNI:                  "a",
				CACertificateRefs:    []v1alpha1.LocalObjectReference{{Name: "ca"}},
				ClientCertificateRef: &v1alpha1.LocalObjectReference{Name: "client"},
			},
		},
	}
}

func TestDeepCopy(t *testing.T) {
	objs := []runtime.Object{
		fullPolicy(), fullBackend(),
		&v1alpha1.TrafficPolicyList{Items: []v1alpha1.TrafficPolicy{*fullPolicy()}},
		&v1alpha1.BackendList{Items: []v1alpha1.Backend{*fullBackend()}},
	}
	for _, obj := range objs {
		cp := obj.DeepCopyObject()
		if !reflect.DeepEqual(obj, cp) {
			t.Errorf("%T: copy differs from the original", obj)
		}
		if reflect.ValueOf(cp).Pointer() == reflect.ValueOf(obj).Pointer() {
			t.Errorf("%T: DeepCopyObject returned the same pointer", obj)
		}
	}

	// The copy shares nothing: changing it through every kind of reference (pointer,
	// slice, map, nested map, quantity) leaves the original as it was.
	orig := fullPolicy()
	cp := orig.DeepCopyObject().(*v1alpha1.TrafficPolicy)
	ep := cp.Spec.Traffic.ExtProc
	*ep.StatusOnError = 500
	*ep.BackendRef.Port = 1
	ep.MessageTimeout.Duration = 0
	ep.MaxBufferSize.Add(resource.MustParse("1Mi"))
	ep.ProcessingOptions.AllowedOverrideModes[0].RequestBodyMode = v1alpha1.BodyNone
	ep.ForwardRules.AllowedHeaders[0] = "z"
	ep.RequestAttributes["p"] = "changed"
	ep.MetadataContext["ns"]["k"] = "changed"
	*cp.Spec.TargetRefs[0].SectionName = "other"
	cp.Status.Ancestors[0].Conditions[0].Status = metav1.ConditionFalse
	cp.Labels["a"] = "changed"
	if !reflect.DeepEqual(orig, fullPolicy()) {
		t.Error("changing the copy changed the original TrafficPolicy")
	}

	b := fullBackend()
	bc := b.DeepCopy()
	bc.Spec.Endpoints[0].Port = 2
	bc.Spec.TLS.ClientCertificateRef.Name = "x"
	bc.Spec.TLS.CACertificateRefs[0].Name = "x"
	if !reflect.DeepEqual(b, fullBackend()) {
		t.Error("changing the copy changed the original Backend")
	}

	var nilPolicy *v1alpha1.TrafficPolicy
	if nilPolicy.DeepCopy() != nil {
		t.Error("DeepCopy of nil is not nil")
	}
}

// manifestDocs returns the YAML documents of the files matching the patterns, relative to
// the repository root.
func manifestDocs(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range patterns {
		files, err := filepath.Glob(filepath.Join("../..", p))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no files (%v)", p, err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, doc := range strings.Split(string(data), "\n---") {
				if strings.TrimSpace(stripComments(doc)) != "" {
					out[f] = append(out[f], doc)
				}
			}
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestManifestsDecodeStrictly decodes every object of deploy/ and examples/kubernetes/
// into its Go type, rejecting unknown fields: a misspelt field would otherwise be dropped
// silently by the API server.
func TestManifestsDecodeStrictly(t *testing.T) {
	newObj := map[string]func() any{
		"v1/Namespace":       func() any { return &corev1.Namespace{} },
		"v1/ServiceAccount":  func() any { return &corev1.ServiceAccount{} },
		"v1/Service":         func() any { return &corev1.Service{} },
		"apps/v1/Deployment": func() any { return &appsv1.Deployment{} },
		"rbac.authorization.k8s.io/v1/ClusterRole":         func() any { return &rbacv1.ClusterRole{} },
		"rbac.authorization.k8s.io/v1/ClusterRoleBinding":  func() any { return &rbacv1.ClusterRoleBinding{} },
		"rbac.authorization.k8s.io/v1/Role":                func() any { return &rbacv1.Role{} },
		"rbac.authorization.k8s.io/v1/RoleBinding":         func() any { return &rbacv1.RoleBinding{} },
		"apiextensions.k8s.io/v1/CustomResourceDefinition": func() any { return &apiextensionsv1.CustomResourceDefinition{} },
		"gateway.networking.k8s.io/v1/GatewayClass":        func() any { return &gwv1.GatewayClass{} },
		"gateway.networking.k8s.io/v1/Gateway":             func() any { return &gwv1.Gateway{} },
		"gateway.networking.k8s.io/v1/HTTPRoute":           func() any { return &gwv1.HTTPRoute{} },
		"gateway.sluice.dev/v1alpha1/TrafficPolicy":        func() any { return &v1alpha1.TrafficPolicy{} },
		"gateway.sluice.dev/v1alpha1/Backend":              func() any { return &v1alpha1.Backend{} },
	}
	kinds := map[string]int{}
	for f, docs := range manifestDocs(t, "deploy/*.yaml", "deploy/crds/*.yaml", "examples/kubernetes/*.yaml") {
		for _, doc := range docs {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			mk := newObj[meta.APIVersion+"/"+meta.Kind]
			if mk == nil {
				t.Errorf("%s: unexpected %s %s", f, meta.APIVersion, meta.Kind)
				continue
			}
			kinds[meta.Kind]++
			if err := yaml.UnmarshalStrict([]byte(doc), mk()); err != nil {
				t.Errorf("%s: %s: %v", f, meta.Kind, err)
			}
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "Role", "Deployment", "Service",
		"CustomResourceDefinition", "GatewayClass", "Gateway", "HTTPRoute", "TrafficPolicy"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

func decodeOne[T any](t *testing.T, file, kind string) *T {
	t.Helper()
	for _, doc := range manifestDocs(t, file)[filepath.Join("../..", file)] {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err == nil && meta.Kind == kind {
			obj := new(T)
			if err := yaml.Unmarshal([]byte(doc), obj); err != nil {
				t.Fatal(err)
			}
			return obj
		}
	}
	t.Fatalf("%s: no %s", file, kind)
	return nil
}

func TestDeployRBACIsLeastPrivilege(t *testing.T) {
	type grant struct{ group, resource, verb string }
	set := func(rules []rbacv1.PolicyRule) map[grant]bool {
		out := map[grant]bool{}
		for _, r := range rules {
			if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
				t.Errorf("unexpected rule %+v", r)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						out[grant{g, res, v}] = true
					}
				}
			}
		}
		return out
	}
	want := map[grant]bool{}
	add := func(group string, resources, verbs []string) {
		for _, r := range resources {
			for _, v := range verbs {
				want[grant{group, r, v}] = true
			}
		}
	}
	read := []string{"get", "list", "watch"}
	add("gateway.networking.k8s.io", []string{"gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies", "listenersets"}, read)
	add("gateway.sluice.dev", []string{"backends", "trafficpolicies"}, read)
	add("", []string{"services", "secrets", "configmaps", "namespaces"}, read)
	add("discovery.k8s.io", []string{"endpointslices"}, read)
	add("gateway.networking.k8s.io", []string{"gatewayclasses/status", "gateways/status", "httproutes/status", "grpcroutes/status", "backendtlspolicies/status", "listenersets/status"}, []string{"update", "patch"})
	add("gateway.sluice.dev", []string{"trafficpolicies/status"}, []string{"update", "patch"})
	add("", []string{"events"}, []string{"create", "patch"})
	add("events.k8s.io", []string{"events"}, []string{"create", "patch"})
	cr := decodeOne[rbacv1.ClusterRole](t, "deploy/rbac.yaml", "ClusterRole")
	if got := set(cr.Rules); !reflect.DeepEqual(got, want) {
		for g := range got {
			if !want[g] {
				t.Errorf("ClusterRole grants %v, not needed", g)
			}
		}
		for g := range want {
			if !got[g] {
				t.Errorf("ClusterRole lacks %v", g)
			}
		}
	}
	role := decodeOne[rbacv1.Role](t, "deploy/rbac.yaml", "Role")
	wantRole := map[grant]bool{{"coordination.k8s.io", "leases", "get"}: true,
		{"coordination.k8s.io", "leases", "create"}: true, {"coordination.k8s.io", "leases", "update"}: true}
	if got := set(role.Rules); !reflect.DeepEqual(got, wantRole) || role.Namespace != "sluice-system" {
		t.Errorf("leader-election Role in %q grants %v, want %v", role.Namespace, got, wantRole)
	}
}

func TestDeployDeployment(t *testing.T) {
	d := decodeOne[appsv1.Deployment](t, "deploy/deployment.yaml", "Deployment")
	if d.Namespace != "sluice-system" || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("namespace %q replicas %v", d.Namespace, d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != "sluice" {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod does not require a non-root user")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	for _, arg := range []string{"kube", "--gateway-class-controller=gateway.sluice.dev/controller",
		"--admin-addr=0.0.0.0:9901", "--gateway-address=$(POD_IP)"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %q lack %q", c.Args, arg)
		}
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP"
	}) {
		t.Error("POD_IP does not come from the downward API")
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v", p)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v", sc)
	}
}
