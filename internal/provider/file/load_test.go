package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// write creates name under dir with content and returns its path.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const route = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
`

const gateway = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  gatewayClassName: sluice
  listeners: [{name: http, port: 8080, protocol: HTTP}]
`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		// want are substrings the error must contain.
		want []string
	}{
		{
			name: "unknown field",
			content: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
  - matchs: []
`,
			want: []string{"f.yaml#1", "HTTPRoute default/web", "spec.rules[0].matchs: unknown field"},
		},
		{
			name:    "unknown apiVersion",
			content: "apiVersion: gateway.networking.k8s.io/v2\nkind: Gateway\nmetadata: {name: g}\n",
			want:    []string{"f.yaml#1", "gateway.networking.k8s.io/v2", "expected one of gateway.networking.k8s.io/v1"},
		},
		{
			name:    "unknown kind",
			content: "apiVersion: v1\nkind: Pod\nmetadata: {name: c}\n",
			want:    []string{"f.yaml#1", `unknown kind "Pod"`, "expected one of"},
		},
		{
			name:    "not an object",
			content: "- a\n- b\n",
			want:    []string{"f.yaml#1", "expected an object with apiVersion, kind and metadata, got array"},
		},
		{
			name:    "missing kind",
			content: "metadata: {name: c}\n",
			want:    []string{"f.yaml#1", "apiVersion and kind are required"},
		},
		{
			name:    "bad yaml with line",
			content: route + "---\n# second\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  x: [\n",
			want:    []string{"f.yaml#2", "invalid YAML", "line 14"},
		},
		{
			name:    "duplicate key",
			content: "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: Opaque\ntype: Opaque\n",
			want:    []string{"f.yaml#1", `line 5: key "type" already set`},
		},
		{
			name:    "wrong type",
			content: "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: c\n  listeners: [{name: h, port: http, protocol: HTTP}]\n",
			want:    []string{"f.yaml#1", "Gateway default/g", "spec.listeners[0].port: expected int32, got string"},
		},
		{
			name:    "missing name",
			content: "apiVersion: v1\nkind: Secret\nmetadata: {namespace: x}\n",
			want:    []string{"f.yaml#1", "metadata.name: required"},
		},
		{
			name:    "duplicate object",
			content: route + "---\n" + route,
			want:    []string{"f.yaml#2", "HTTPRoute default/web", "also defined at", "f.yaml#1"},
		},
		{
			name:    "namespace on cluster-scoped",
			content: "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: c, namespace: x}\nspec: {controllerName: a/b}\n",
			want:    []string{"cluster-scoped"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, t.TempDir(), "f.yaml", tc.content)
			_, err := Load(p)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestLoadCollectsAllErrors checks that one bad document does not hide the next.
func TestLoadCollectsAllErrors(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "f.yaml", "apiVersion: v9\nkind: Secret\nmetadata: {name: a}\n---\n"+
		"apiVersion: v1\nkind: Secret\nmetadata: {name: b}\nbogus: 1\n---\n"+gateway)
	res, err := Load(p, filepath.Join(dir, "missing.yaml"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"f.yaml#1", "f.yaml#2 (Secret default/b): bogus: unknown field", "missing.yaml"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if len(res.Gateways) != 1 {
		t.Errorf("the valid Gateway was not kept: %d", len(res.Gateways))
	}
}

func TestLoadMultiDocAndDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "b.yaml", "---\n# leading separator and comments\n"+route+"---\n"+gateway+"...\n")
	write(t, dir, "a.yml", `apiVersion: v1
kind: Secret
metadata: {name: tls, namespace: edge}
type: kubernetes.io/tls
data:
  tls.crt: Y3J0
stringData:
  tls.key: key
  tls.crt: override
`)
	write(t, dir, "ignored.txt", "not yaml")
	write(t, dir, ".hidden.yaml", "not: [valid")
	write(t, dir, "sub/nested.yaml", "not: [valid")
	// The file named on its own and through its directory is read once.
	res, err := Load(dir, filepath.Join(dir, "b.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.HTTPRoutes) != 1 || len(res.Gateways) != 1 || len(res.Secrets) != 1 {
		t.Fatalf("got %d routes, %d gateways, %d secrets", len(res.HTTPRoutes), len(res.Gateways), len(res.Secrets))
	}
	if ns := res.HTTPRoutes[0].Namespace; ns != "default" {
		t.Errorf("route namespace %q, want default", ns)
	}
	if ns := res.Gateways[0].Namespace; ns != "edge" {
		t.Errorf("gateway namespace %q, want edge", ns)
	}
	s := res.Secrets[0]
	if string(s.Data["tls.key"]) != "key" || string(s.Data["tls.crt"]) != "override" || s.StringData != nil {
		t.Errorf("stringData not merged: data=%q stringData=%q", s.Data, s.StringData)
	}
	want := map[translate.ObjectKey]string{
		{Kind: "HTTPRoute", Namespace: "default", Name: "web"}: filepath.Join(dir, "b.yaml") + "#1",
		{Kind: "Gateway", Namespace: "edge", Name: "gw"}:       filepath.Join(dir, "b.yaml") + "#2",
		{Kind: "Secret", Namespace: "edge", Name: "tls"}:       filepath.Join(dir, "a.yml") + "#1",
	}
	for k, v := range want {
		if res.Origins[k] != v {
			t.Errorf("origin of %s = %q, want %q", k, res.Origins[k], v)
		}
	}
}

func TestLoadAllKinds(t *testing.T) {
	p := write(t, t.TempDir(), "all.yaml", `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: gateway.sluice.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: g2, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: b}
spec: {endpoints: [{host: 127.0.0.1, port: 80}]}
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  traffic: {extProc: {disabled: true}}
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80, name: http}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s-1, labels: {kubernetes.io/service-name: s}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}]
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {tier: web}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: old}
spec: {}
`)
	res, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	got := []int{len(res.GatewayClasses), len(res.ReferenceGrants), len(res.Backends), len(res.TrafficPolicies),
		len(res.Services), len(res.EndpointSlices), len(res.Namespaces), len(res.HTTPRoutes)}
	want := []int{1, 2, 1, 1, 1, 1, 1, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("counts %v, want %v", got, want)
		}
	}
	if res.GatewayClasses[0].Namespace != "" || res.Namespaces[0].Namespace != "" {
		t.Error("cluster-scoped objects got a namespace")
	}
}

func TestSplitDocuments(t *testing.T) {
	docs := splitDocuments([]byte("a: 1\n---\nb: 2\n--- # c\n\nc: 3\n"))
	if len(docs) != 3 {
		t.Fatalf("%d documents", len(docs))
	}
	lines := []int{docs[0].line, docs[1].line, docs[2].line}
	if lines[0] != 1 || lines[1] != 3 || lines[2] != 5 {
		t.Errorf("start lines %v, want [1 3 5]", lines)
	}
}

// TestLoadList reads a v1 List, as `kubectl get -o yaml` writes.
func TestLoadList(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "list.yaml", `apiVersion: v1
kind: List
items:
- apiVersion: gateway.networking.k8s.io/v1
  kind: Gateway
  metadata: {name: gw, namespace: edge, resourceVersion: "12", uid: abc}
  spec:
    gatewayClassName: sluice
    listeners: [{name: http, port: 8080, protocol: HTTP}]
  status: {}
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: web}
  spec: {bogus: 1}
`)
	res, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+"#1.items[1] (HTTPRoute default/web): spec.bogus: unknown field") {
		t.Fatalf("error %v", err)
	}
	if len(res.Gateways) != 1 || res.Origins[translate.ObjectKey{Kind: "Gateway", Namespace: "edge", Name: "gw"}] != p+"#1.items[0]" {
		t.Errorf("list item not loaded with its origin: %v", res.Origins)
	}
}
