package e2e

import (
	"strings"
	"testing"
)

// attachSetup is one gateway with routes r (host a.example.com: rule "named" on /named and
// a catch-all rule) and r2 (host b.example.com), all to one upstream, and four processors.
type attachSetup struct {
	up                           *upstream
	gwP, listenerP, routeP, rule *proc
}

func newAttachSetup(t *testing.T) *attachSetup {
	return &attachSetup{
		up:        newUpstream(t, "up", nil),
		gwP:       newProc(t, "gateway-proc", nil),
		listenerP: newProc(t, "listener-proc", nil),
		routeP:    newProc(t, "route-proc", nil),
		rule:      newProc(t, "rule-proc", nil),
	}
}

func (s *attachSetup) config(policies ...string) string {
	parts := []string{gatewayYAML,
		routeYAML("r", "a.example.com", rule{name: "named", prefix: "/named", backend: "up"}, rule{backend: "up"}),
		routeYAML("r2", "b.example.com", rule{backend: "up"}),
		backendYAML("up", s.up.srv.Listener.Addr().String()),
		procBackendYAML("gateway-proc", s.gwP.addr),
		procBackendYAML("listener-proc", s.listenerP.addr),
		procBackendYAML("route-proc", s.routeP.addr),
		procBackendYAML("rule-proc", s.rule.addr),
	}
	return docs(append(parts, policies...)...)
}

// streamsOf lists how many streams each processor got.
func (s *attachSetup) counts() map[string]int {
	return map[string]int{"gateway": s.gwP.count(), "listener": s.listenerP.count(), "route": s.routeP.count(), "rule": s.rule.count()}
}

func TestAttachmentPrecedence(t *testing.T) {
	t.Parallel()
	s := newAttachSetup(t)
	gwPol := policyYAML("on-gateway", gwTarget, "", "gateway-proc", "processingOptions: {responseHeaderMode: Skip}")
	lPol := policyYAML("on-listener", target{kind: "Gateway", name: "gw", section: "http"}, "", "listener-proc", "")
	rPol := policyYAML("on-route", routeTarget("r"), "", "route-proc", "")
	rulePol := policyYAML("on-rule", target{kind: "HTTPRoute", name: "r", section: "named"}, "", "rule-proc", "")
	g := startGateway(t, s.config(gwPol, lPol, rPol, rulePol))

	check := func(host, path, want string, wantKinds string) {
		t.Helper()
		before := s.counts()
		r := g.get(host, path)
		if r.Status != 200 {
			t.Fatalf("%s%s: status %d %s", host, path, r.Status, r.Body)
		}
		if e := s.up.seen(t); e.Path != path {
			t.Errorf("upstream saw %s, want %s", e.Path, path)
		}
		after := s.counts()
		for k := range after {
			d := after[k] - before[k]
			if k == want && d != 1 || k != want && d != 0 {
				t.Errorf("%s%s: processor %s got %d streams, want the %s processor alone", host, path, k, d, want)
			}
		}
		var p *proc
		switch want {
		case "gateway":
			p = s.gwP
		case "listener":
			p = s.listenerP
		case "route":
			p = s.routeP
		case "rule":
			p = s.rule
		}
		ss := p.all()
		last := ss[len(ss)-1]
		eventually(t, "the stream's messages", func() bool { return strings.Join(last.kinds(), ",") == wantKinds })
		if v, _ := headerOf(reqHeaders(t, last), ":path"); v != path {
			t.Errorf("%s processor saw :path %q, want %q", want, v, path)
		}
	}
	// The most specific policy wins as a whole: the route's and rule's policies do not
	// inherit the Gateway's responseHeaderMode Skip.
	check("a.example.com", "/named/x", "rule", "request_headers,response_headers")
	check("a.example.com", "/other", "route", "request_headers,response_headers")
	check("b.example.com", "/", "listener", "request_headers,response_headers")

	// Without the listener's policy, r2 falls back to the Gateway's (with its Skip).
	g.write(s.config(gwPol, rPol, rulePol))
	eventually(t, "the reload", func() bool {
		n := s.gwP.count()
		if g.get("b.example.com", "/reload").Status != 200 {
			return false
		}
		s.up.seen(t)
		return s.gwP.count() > n
	})
	check("b.example.com", "/", "gateway", "request_headers")
}

func TestDisabledOnRouteSwitchesOffGatewayProcessor(t *testing.T) {
	t.Parallel()
	s := newAttachSetup(t)
	g := startGateway(t, s.config(
		policyYAML("on-gateway", gwTarget, "", "gateway-proc", ""),
		policyYAML("off-on-r", routeTarget("r"), "", "", "disabled: true"),
	))
	if r := g.get("a.example.com", "/x", "x-probe", "1"); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	if e := s.up.seen(t); e.Header.Get("X-Probe") != "1" {
		t.Errorf("upstream saw %v", e.Header)
	}
	if n := s.gwP.count(); n != 0 {
		t.Errorf("gateway processor got %d streams for a route that disables it", n)
	}
	// Other routes keep the Gateway's processor.
	if r := g.get("b.example.com", "/y"); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	s.up.seen(t)
	if st := s.gwP.only(t, 2); strings.Join(st.kinds(), ",") != "request_headers,response_headers" {
		t.Errorf("gateway processor for r2: %v", st.kinds())
	}
}

func TestPreAndPostRoutingBothRun(t *testing.T) {
	t.Parallel()
	s := newAttachSetup(t)
	g := startGateway(t, s.config(
		policyYAML("pre", gwTarget, "PreRouting", "gateway-proc", ""),
		policyYAML("post", routeTarget("r"), "PostRouting", "route-proc", ""),
	))
	if r := g.get("a.example.com", "/x"); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	s.up.seen(t)
	pre := s.gwP.only(t, 2)
	post := s.routeP.only(t, 2)
	if pre.opened >= post.opened {
		t.Errorf("PostRouting stream opened (#%d) before the PreRouting one (#%d)", post.opened, pre.opened)
	}
	for name, st := range map[string]*streamRec{"pre": pre, "post": post} {
		if k := strings.Join(st.kinds(), ","); k != "request_headers,response_headers" {
			t.Errorf("%s processor received %s", name, k)
		}
	}
	// The request reaches PreRouting first; the response goes the other way, as Envoy's
	// filter chain does (PostRouting's processor, the later filter, sees it first).
	pre.mu.Lock()
	preReq, preResp := pre.msgs[0].seq, pre.msgs[1].seq
	pre.mu.Unlock()
	post.mu.Lock()
	postReq, postResp := post.msgs[0].seq, post.msgs[1].seq
	post.mu.Unlock()
	if preReq >= postReq {
		t.Errorf("request headers reached PostRouting (#%d) before PreRouting (#%d)", postReq, preReq)
	}
	if postResp >= preResp {
		t.Errorf("response headers reached PreRouting (#%d) before PostRouting (#%d)", preResp, postResp)
	}
	if c := s.listenerP.count() + s.rule.count(); c != 0 {
		t.Errorf("unattached processors got %d streams", c)
	}
}

// A PreRouting processor attached to one listener (sectionName) runs for it.
func TestPreRoutingOnListener(t *testing.T) {
	t.Parallel()
	s := newAttachSetup(t)
	g := startGateway(t, s.config(
		policyYAML("pre", target{kind: "Gateway", name: "gw", section: "http"}, "PreRouting", "listener-proc", ""),
	))
	if r := g.get("b.example.com", "/p"); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	s.up.seen(t)
	if v, _ := headerOf(reqHeaders(t, s.listenerP.only(t, 2)), ":authority"); v != "b.example.com" {
		t.Errorf("processor saw :authority %q", v)
	}
	// Unrouted requests still pass the PreRouting processor, which runs before routing.
	if r := g.get("nowhere.example.com", "/"); r.Status != 404 {
		t.Errorf("unrouted host: %d", r.Status)
	}
	eventually(t, "a second stream", func() bool { return s.listenerP.count() == 2 })
}
