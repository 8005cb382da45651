package e2e

import (
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

func TestImmediateResponseOnRequestHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return immediate(403, "denied by the processor\n", mutation(nil, setHdr("x-denied-by", "p"), setHdr("content-type", "text/plain")))
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", ""),
	))
	r := g.get("a.example.com", "/secret")
	if r.Status != 403 || r.Body != "denied by the processor\n" || r.Header.Get("X-Denied-By") != "p" || r.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("client got %d %v %q", r.Status, r.Header, r.Body)
	}
	up.none(t)
	st := p.only(t, 1)
	// No response_headers message for the processor's own local reply.
	if k := strings.Join(st.kinds(), ","); k != "request_headers" {
		t.Errorf("processor received %s, want request_headers only", k)
	}
}

func TestImmediateResponseOnResponseHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			return immediate(502, "upstream answer withheld", mutation(nil, setHdr("x-withheld", "1")))
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", ""),
	))
	r := g.get("a.example.com", "/x")
	if r.Status != 502 || r.Body != "upstream answer withheld" || r.Header.Get("X-Withheld") != "1" {
		t.Errorf("client got %d %v %q", r.Status, r.Header, r.Body)
	}
	if r.Header.Get("X-Upstream") != "" {
		t.Errorf("the upstream's headers leaked into the local reply: %v", r.Header)
	}
	if e := up.seen(t); e.Path != "/x" {
		t.Errorf("upstream saw %s", e.Path)
	}
	st := p.only(t, 2)
	if k := strings.Join(st.kinds(), ","); k != "request_headers,response_headers" {
		t.Errorf("processor received %s", k)
	}
	if v, _ := headerOf(st.messages()[1].GetResponseHeaders().GetHeaders(), "x-upstream"); v != "up" {
		t.Errorf("processor saw the upstream's x-upstream %q", v)
	}
}

// Family 15: an immediate response without a valid status becomes a 200.
func TestImmediateResponseBadStatusIs200(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return immediate(100, "informational is not a final status", nil)
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", ""),
	))
	if r := g.get("a.example.com", "/"); r.Status != 200 || r.Body != "informational is not a final status" {
		t.Errorf("client got %d %q", r.Status, r.Body)
	}
	up.none(t)
}
