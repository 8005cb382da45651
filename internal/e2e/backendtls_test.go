package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-gateway/sluice/internal/sampleproc"
	"github.com/sluice-gateway/sluice/internal/testutil"
)

// indent prefixes every line of s with n spaces, for PEM blocks inside YAML.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+pad)
}

// TestBackendTLSPolicy: a BackendTLSPolicy makes Sluice speak TLS to the Service it
// targets, for routes and for an external processor behind a Service, verifying the
// server against the policy's CA and hostname (or subject alternative names). A server
// that fails verification gets no request: the client sees 502 (route) or the processor's
// failure outcome, never a request in plain text or to an unverified server.
func TestBackendTLSPolicy(t *testing.T) {
	t.Parallel()
	ca, rogue := testutil.NewCA(t), testutil.NewCA(t)
	good, _, _ := ca.Issue(t, []string{"app.internal"}, "spiffe://cluster.local/ns/default/sa/app")
	bad, _, _ := rogue.Issue(t, []string{"app.internal"})

	tlsUpstream := func(name string, cert tls.Certificate) (port string) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s tls=%t sni=%s processed=%s", name, r.TLS != nil, r.TLS.ServerName, r.Header.Get("X-Processed"))
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
		srv.StartTLS()
		t.Cleanup(srv.Close)
		_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
		return port
	}
	goodPort, roguePort := tlsUpstream("good", good), tlsUpstream("rogue", bad)

	// The sample processor over TLS, adding a header.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{good}})))
	sampleproc.Register(gs, sampleproc.New(sampleproc.Options{AddHeaders: [][2]string{{"x-processed", "over-tls"}}}))
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	_, procPort, _ := net.SplitHostPort(ln.Addr().String())

	service := func(name, port, appProtocol string) string {
		ap := ""
		if appProtocol != "" {
			ap = ", appProtocol: " + appProtocol
		}
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  ports: [{name: main, port: 443, targetPort: %[2]s%[3]s}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s-1, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: main, port: %[2]s}]
endpoints: [{addresses: [127.0.0.1]}]
---
`, name, port, ap)
	}
	policy := func(name, target, validation string) string {
		return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: %s}
spec:
  targetRefs: [{group: "", kind: Service, name: %s}]
  validation:
%s
---
`, name, target, validation)
	}
	const withCA = "    caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]\n"
	cfg := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: sluice
  listeners: [{name: http, port: {{PORT}}, protocol: HTTP}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ca}
data:
  ca.crt: |
` + indent(string(ca.PEM), 4) + `
---
` + service("app", goodPort, "") + service("app-sans", goodPort, "") + service("app-wrong-name", goodPort, "") +
		service("rogue", roguePort, "") + service("proc", procPort, "kubernetes.io/h2c") +
		policy("app", "app", withCA+"    hostname: app.internal") +
		policy("app-sans", "app-sans", withCA+"    hostname: sni.only\n    subjectAltNames: [{type: URI, uri: \"spiffe://cluster.local/ns/default/sa/app\"}]") +
		policy("app-wrong-name", "app-wrong-name", withCA+"    hostname: other.internal") +
		policy("rogue", "rogue", withCA+"    hostname: app.internal") +
		policy("proc", "proc", withCA+"    hostname: app.internal") + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: routes}
spec:
  parentRefs: [{name: gw}]
  hostnames: [www.example.com]
  rules:
  - matches: [{path: {value: /app}}]
    backendRefs: [{name: app, port: 443}]
  - matches: [{path: {value: /sans}}]
    backendRefs: [{name: app-sans, port: 443}]
  - matches: [{path: {value: /wrong-name}}]
    backendRefs: [{name: app-wrong-name, port: 443}]
  - matches: [{path: {value: /rogue}}]
    backendRefs: [{name: rogue, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: processed}
spec:
  parentRefs: [{name: gw}]
  hostnames: [processed.example.com]
  rules:
  - name: main
    backendRefs: [{name: app, port: 443}]
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: proc}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: processed}]
  traffic:
    extProc:
      backendRef: {name: proc, port: 443}
      processingOptions: {responseHeaderMode: Skip}
`
	g := startGateway(t, cfg)

	tests := []struct {
		host, path string
		status     int
		body       string
	}{
		{"www.example.com", "/app", 200, "good tls=true sni=app.internal processed="},
		{"www.example.com", "/sans", 200, "good tls=true sni=sni.only processed="},
		{"www.example.com", "/wrong-name", 502, ""},
		{"www.example.com", "/rogue", 502, ""},
		// The processor is reached over TLS (it serves nothing else) and adds its header.
		{"processed.example.com", "/", 200, "good tls=true sni=app.internal processed=over-tls"},
	}
	for _, tc := range tests {
		r := g.get(tc.host, tc.path)
		if r.Status != tc.status || (tc.body != "" && r.Body != tc.body) {
			t.Errorf("%s%s: %d %q, want %d %q\nlogs:\n%s", tc.host, tc.path, r.Status, r.Body, tc.status, tc.body, g.logs.String())
		}
	}
}
