package e2e

import (
	"io"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// A processor that answers a Streamed request body chunk with an immediate response
// stops the request: the client gets that reply at once, even though the upload to the
// (plain HTTP/1.1) upstream had already begun.
func TestImmediateResponseOnStreamedRequestBody(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestBody() != nil {
			return immediate(403, "body refused\n", nil)
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "processingOptions: {requestBodyMode: Streamed}"),
	))
	start := time.Now()
	// An io.Reader of unknown length: the body goes chunked.
	r := g.do("POST", "a.example.com", "/upload", io.MultiReader(strings.NewReader("first part "), strings.NewReader("second part")))
	if r.Status != 403 || r.Body != "body refused\n" {
		t.Errorf("client got %d %q, want the processor's 403", r.Status, r.Body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the local reply took %v", d)
	}
}

// A Streamed request body whose processor does not answer in time fails closed with 504.
func TestTimeoutOnStreamedRequestBody(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestBody() != nil {
			return hang
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "messageTimeout: 300ms\nprocessingOptions: {requestBodyMode: Streamed}"),
	))
	start := time.Now()
	r := g.do("POST", "a.example.com", "/upload", io.MultiReader(strings.NewReader("first part "), strings.NewReader("second part")))
	if r.Status != 504 {
		t.Errorf("client got %d %q, want 504", r.Status, r.Body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 504 took %v", d)
	}
}

// A processor that answers the request headers but not the body that is already on its
// way to it (sendBodyWithoutWaitingForHeaderResponse), under FailOpen: the headers answer
// applies, and after the timeout the body passes unprocessed.
func TestEarlyBodyProcessorLeavesAfterHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return reqHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr("x-seen", "1"))})
		}
		return hang
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "failureMode: FailOpen\nmessageTimeout: 300ms\nsendBodyWithoutWaitingForHeaderResponse: true\nprocessingOptions: {requestBodyMode: Streamed}"),
	))
	r := g.do("POST", "a.example.com", "/upload", io.MultiReader(strings.NewReader("first part "), strings.NewReader("second part")))
	if r.Status != 200 {
		t.Fatalf("client got %d %q", r.Status, r.Body)
	}
	if e := up.seen(t); e.Body != "first part second part" || e.Header.Get("X-Seen") != "1" {
		t.Errorf("upstream saw %q %v", e.Body, e.Header)
	}
}

// A route timeout that fires while the processor holds a Streamed request body chunk
// answers 504 at once, not when the processor's message timeout ends.
func TestRouteTimeoutWhileProcessorHoldsBody(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestBody() != nil {
			return hang
		}
		return nil
	})
	route := strings.Replace(routeYAML("r", "a.example.com", rule{backend: "up"}),
		"  - backendRefs:", "  - timeouts: {request: 300ms}\n    backendRefs:", 1)
	g := startGateway(t, docs(gatewayYAML, route,
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "messageTimeout: 4s\nprocessingOptions: {requestBodyMode: Streamed}"),
	))
	start := time.Now()
	r := g.do("POST", "a.example.com", "/upload", io.MultiReader(strings.NewReader("first part "), strings.NewReader("second part")))
	if r.Status != 504 {
		t.Errorf("client got %d %q, want 504", r.Status, r.Body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the 504 took %v, want about the route timeout (300ms)", d)
	}
}
