package e2e

import (
	"testing"
)

func TestReloadKeepsProcessorConnection(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", nil)
	cfg := func(otherHost string) string {
		return docs(gatewayYAML,
			routeYAML("r", "a.example.com", rule{backend: "up"}),
			routeYAML("other", otherHost, rule{backend: "up"}),
			backendYAML("up", up.srv.Listener.Addr().String()),
			procBackendYAML("p", p.addr),
			policyYAML("p", gwTarget, "", "p", ""),
		)
	}
	g := startGateway(t, cfg("one.example.com"))
	for range 3 {
		if r := g.get("a.example.com", "/"); r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		up.seen(t)
	}
	if n := p.conns.Load(); n != 1 {
		t.Fatalf("processor accepted %d connections for 3 requests, want 1", n)
	}

	// Change an unrelated route and wait until the new configuration serves.
	g.write(cfg("two.example.com"))
	eventually(t, "the reload", func() bool {
		r := g.get("two.example.com", "/")
		if r.Status == 200 {
			up.seen(t)
		}
		return r.Status == 200
	})
	if r := g.get("a.example.com", "/after"); r.Status != 200 {
		t.Fatalf("status %d after reload", r.Status)
	}
	up.seen(t)
	if r := g.get("one.example.com", "/"); r.Status != 404 {
		t.Errorf("old route after reload: %d", r.Status)
	}
	if n := p.conns.Load(); n != 1 {
		t.Errorf("processor accepted %d connections across a reload, want 1 (the connection is kept)", n)
	}
	if n := p.count(); n < 5 {
		t.Errorf("processor got %d streams, want at least 5", n)
	}
}
