package translate_test

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/provider/file"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// loadYAML loads documents as file mode would.
func loadYAML(t *testing.T, docs string) *translate.Resources {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.yaml")
	if err := os.WriteFile(path, []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := file.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

const listenerSetGateway = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: gateway.sluice.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: sluice
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: gw.example.com}
`

// TestListenerSetPrecedence checks that between ListenerSets the older keeps a
// hostname, whatever their names, and that the Gateway counts only accepted ones.
func TestListenerSetPrecedence(t *testing.T) {
	res := loadYAML(t, listenerSetGateway+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: a-young, namespace: infra, creationTimestamp: "2025-02-01T00:00:00Z"}
spec:
  parentRef: {name: gw}
  listeners: [{name: web, port: 80, protocol: HTTP, hostname: shared.example.com}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: z-old, namespace: infra, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  parentRef: {name: gw}
  listeners: [{name: web, port: 80, protocol: HTTP, hostname: shared.example.com}]
`)
	out := translate.Translate(res, translate.Options{})
	old := out.ListenerSets[types.NamespacedName{Namespace: "infra", Name: "z-old"}]
	young := out.ListenerSets[types.NamespacedName{Namespace: "infra", Name: "a-young"}]
	if old == nil || young == nil {
		t.Fatalf("missing ListenerSet statuses: %v", out.ListenerSets)
	}
	if c := meta.FindStatusCondition(old.Conditions, string(gwv1.ListenerSetConditionAccepted)); c == nil || c.Status != "True" {
		t.Errorf("older ListenerSet: Accepted %+v, want True", c)
	}
	c := meta.FindStatusCondition(young.Listeners[0].Conditions, string(gwv1.ListenerConditionConflicted))
	if c == nil || c.Status != "True" || c.Reason != string(gwv1.ListenerReasonHostnameConflict) {
		t.Errorf("younger ListenerSet's listener: Conflicted %+v, want True HostnameConflict", c)
	}
	gw := out.Gateways[types.NamespacedName{Namespace: "infra", Name: "gw"}]
	if gw.AttachedListenerSets == nil || *gw.AttachedListenerSets != 1 {
		t.Errorf("attachedListenerSets = %v, want 1", gw.AttachedListenerSets)
	}
	names := map[string]bool{}
	for _, p := range out.Config.Ports {
		for _, l := range p.Listeners {
			names[l.Name] = true
		}
	}
	if !names["infra/gw/http"] || !names["infra/z-old/web"] || names["infra/a-young/web"] {
		t.Errorf("served listeners %v, want infra/gw/http and infra/z-old/web only", names)
	}
}

// TestListenerSetOfAnotherController checks that in Kubernetes mode a ListenerSet of a
// Gateway Sluice does not serve gets no status, and routes through it no entry.
func TestListenerSetOfAnotherController(t *testing.T) {
	res := loadYAML(t, listenerSetGateway+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: infra}
spec:
  gatewayClassName: other
  allowedListeners: {namespaces: {from: Same}}
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: infra}
spec:
  parentRef: {name: theirs}
  listeners: [{name: web, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: ListenerSet, name: ls}]
`)
	out := translate.Translate(res, translate.Options{})
	if len(out.ListenerSets) != 0 || len(out.HTTPRoutes) != 0 {
		t.Errorf("got ListenerSet statuses %v and route statuses %v, want none", out.ListenerSets, out.HTTPRoutes)
	}
	if gw := out.Gateways[types.NamespacedName{Namespace: "infra", Name: "gw"}]; gw.AttachedListenerSets == nil || *gw.AttachedListenerSets != 0 {
		t.Errorf("attachedListenerSets = %v, want 0 (allowedListeners is set)", gw.AttachedListenerSets)
	}
}
