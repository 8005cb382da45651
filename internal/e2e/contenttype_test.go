package e2e

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// TestRemovedContentTypeStaysRemoved: a processor that removes content-type from the
// response must not see it come back. net/http sniffs a Content-Type for a response that
// has none; a proxy must not invent response headers.
func TestRemovedContentTypeStaysRemoved(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil) // answers application/json
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			return respHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation([]string{"content-type"})})
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", ""),
	))
	r := g.get("a.example.com", "/")
	up.seen(t)
	if r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	if ct, ok := r.Header["Content-Type"]; ok {
		t.Errorf("client got Content-Type %q after the processor removed it", ct)
	}
}
