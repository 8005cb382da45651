package e2e

import (
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// SPEC 5b: a processor routing on a field of a Buffered JSON body answers the body with a
// header change and clear_route_cache; nothing has gone upstream yet, so the route is
// chosen again.
func TestClearRouteCacheInBufferedBodyAnswer(t *testing.T) {
	t.Parallel()
	oldUp, newUp := newUpstream(t, "old", nil), newUpstream(t, "new", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if b := m.GetRequestBody(); b != nil && strings.Contains(string(b.GetBody()), `"model":"new"`) {
			return reqBodyAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr(":path", "/new/chat")), ClearRouteCache: true})
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{prefix: "/new", backend: "new"}, rule{backend: "old"}),
		backendYAML("old", oldUp.srv.Listener.Addr().String()),
		backendYAML("new", newUp.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", routeTarget("r"), "", "p", "processingOptions: {requestBodyMode: Buffered}"),
	))
	r := g.do("POST", "a.example.com", "/chat", strings.NewReader(`{"model":"new"}`), "Content-Type", "application/json")
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if e := decode(t, r); e.Name != "new" || e.Path != "/new/chat" || e.Body != `{"model":"new"}` {
		t.Errorf("client got %s's echo of %s %q, want new's of /new/chat", e.Name, e.Path, e.Body)
	}
	newUp.seen(t)
	oldUp.none(t)
}
