package e2e

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

func TestPreRoutingPathChangeChoosesRoute(t *testing.T) {
	t.Parallel()
	oldUp, newUp := newUpstream(t, "old", nil), newUpstream(t, "new", nil)
	p := newProc(t, "pre", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return reqHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr(":path", "/new/place?q=1"))})
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{prefix: "/new", backend: "new"}, rule{backend: "old"}),
		backendYAML("old", oldUp.srv.Listener.Addr().String()),
		backendYAML("new", newUp.srv.Listener.Addr().String()),
		procBackendYAML("pre", p.addr),
		policyYAML("pre", gwTarget, "PreRouting", "pre", ""),
	))
	r := g.get("a.example.com", "/old/place")
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if e := decode(t, r); e.Name != "new" || e.Path != "/new/place?q=1" {
		t.Errorf("client got the answer of %s for %s, want new for /new/place?q=1", e.Name, e.Path)
	}
	if e := newUp.seen(t); e.Path != "/new/place?q=1" {
		t.Errorf("new upstream saw %s", e.Path)
	}
	oldUp.none(t)
	if v, _ := headerOf(reqHeaders(t, p.only(t, 1)), ":path"); v != "/old/place" {
		t.Errorf("processor saw :path %q, want the client's /old/place", v)
	}
}

func TestClearRouteCacheReroutesOnAuthority(t *testing.T) {
	t.Parallel()
	upA, upB, upC := newUpstream(t, "a", nil), newUpstream(t, "b", nil), newUpstream(t, "c", nil)
	// The processor moves every request to b.example.com; it asks for the route to be
	// chosen again only when the client sends x-clear.
	p := newProc(t, "post", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		h := m.GetRequestHeaders()
		if h == nil {
			return nil
		}
		_, clear := headerOf(h.GetHeaders(), "x-clear")
		return reqHeadersAns(&extprocv3.CommonResponse{
			HeaderMutation:  mutation(nil, setHdr(":authority", "b.example.com")),
			ClearRouteCache: clear,
		})
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("ra", "a.example.com", rule{backend: "a"}),
		routeYAML("rb", "b.example.com", rule{backend: "b"}),
		routeYAML("rc", "c.example.com", rule{backend: "c"}),
		backendYAML("a", upA.srv.Listener.Addr().String()),
		backendYAML("c", upC.srv.Listener.Addr().String()),
		backendYAML("b", upB.srv.Listener.Addr().String()),
		procBackendYAML("post", p.addr),
		policyYAML("post", routeTarget("ra"), "", "post", "mutationRules: {allowAllRouting: true}"),
		policyYAML("post-default-rules", routeTarget("rc"), "", "post", ""),
	))

	t.Run("with clear_route_cache", func(t *testing.T) {
		r := g.get("a.example.com", "/x", "x-clear", "1")
		if r.Status != 200 || decode(t, r).Name != "b" {
			t.Fatalf("status %d, body %s; want b's answer", r.Status, r.Body)
		}
		if e := upB.seen(t); e.Host != "b.example.com" || e.Path != "/x" {
			t.Errorf("upstream b saw host %q path %q", e.Host, e.Path)
		}
		upA.none(t)
	})
	t.Run("without clear_route_cache", func(t *testing.T) {
		r := g.get("a.example.com", "/y")
		if r.Status != 200 || decode(t, r).Name != "a" {
			t.Fatalf("status %d, body %s; want a's answer (the route is kept)", r.Status, r.Body)
		}
		if e := upA.seen(t); e.Host != "b.example.com" {
			t.Errorf("upstream a saw host %q, want the mutated b.example.com", e.Host)
		}
		upB.none(t)
	})
	t.Run("routing headers blocked by default", func(t *testing.T) {
		r := g.get("c.example.com", "/z", "x-clear", "1")
		if r.Status != 200 || decode(t, r).Name != "c" {
			t.Fatalf("status %d, body %s; want c's answer", r.Status, r.Body)
		}
		if e := upC.seen(t); e.Host != "c.example.com" {
			t.Errorf("upstream c saw host %q: the :authority change should be ignored without allowAllRouting", e.Host)
		}
		upB.none(t)
	})
	if n := p.count(); n != 3 {
		t.Errorf("processor got %d streams, want 3", n)
	}
}
