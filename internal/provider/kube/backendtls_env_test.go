package kube

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/testutil"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// TestBackendTLSPolicyAgainstAPIServer: a BackendTLSPolicy and its CA ConfigMap, created
// in the API server, make the route's Service a TLS backend, and the policy's status
// reports it against the Gateway whose route uses the Service.
func TestBackendTLSPolicyAgainstAPIServer(t *testing.T) {
	cfg, scheme, c, ctx := envClient(t)
	f := fixture{ns: newNamespace(ctx, t, c, "btls"), class: "sluice-btls", otherClass: "other-btls", port: 18083}
	f.create(ctx, t, c)
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: f.ns, Name: name} }
	ca := testutil.NewCA(t)
	for _, o := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "ca"}, Data: map[string]string{"ca.crt": string(ca.PEM)}},
		&gwv1.BackendTLSPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "echo-tls"},
			Spec: gwv1.BackendTLSPolicySpec{
				TargetRefs: []gwv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gwv1.LocalPolicyTargetReference{
					Group: "", Kind: "Service", Name: "echo"}}},
				Validation: gwv1.BackendTLSPolicyValidation{
					CACertificateRefs: []gwv1.LocalObjectReference{{Group: "", Kind: "ConfigMap", Name: "ca"}},
					Hostname:          "echo.internal",
				},
			}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
	}

	p, err := New(cfg, Options{Scheme: scheme, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res := startProvider(t, p).waitState(t, "the policy and its ConfigMap in the provider's state", func(r *translate.Resources) bool {
		return slices.ContainsFunc(r.BackendTLSPolicies, func(b *gwv1.BackendTLSPolicy) bool { return b.Namespace == f.ns }) &&
			slices.ContainsFunc(r.ConfigMaps, func(cm *corev1.ConfigMap) bool { return cm.Namespace == f.ns && cm.Name == "ca" })
	})
	result := translate.Translate(res, translate.Options{ControllerName: testController})
	routes := routesOf(result.Config, f.port)
	if len(routes) != 1 || len(routes[0].Backends) != 1 {
		t.Fatalf("routes %+v", routes)
	}
	b := routes[0].Backends[0].Backend
	if b.Protocol != ir.UpstreamHTTPS || b.TLS == nil || b.TLS.SNI != "echo.internal" || string(b.TLS.CAPEM) != string(ca.PEM) {
		t.Fatalf("backend %+v, want https to echo.internal with the ConfigMap's CA", b)
	}

	w := NewStatusWriter(c, c, StatusOptions{ControllerName: testController, Logger: quietLogger()})
	if _, err := w.Write(ctx, result); err != nil {
		t.Fatalf("writing status: %v", err)
	}
	var got gwv1.BackendTLSPolicy
	mustGet(ctx, t, c, key("echo-tls"), &got)
	if len(got.Status.Ancestors) != 1 || got.Status.Ancestors[0].AncestorRef.Name != "gw" ||
		got.Status.Ancestors[0].ControllerName != testController {
		t.Fatalf("BackendTLSPolicy ancestors %+v, want Sluice's entry for gw", got.Status.Ancestors)
	}
	wantTrue(t, "BackendTLSPolicy ancestor", got.Status.Ancestors[0].Conditions, got.Generation, "Accepted", "ResolvedRefs")
}
