package e2e

import (
	"fmt"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

func TestProcessorUnreachable(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens here
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("closed", "closed.example.com", rule{backend: "up"}),
		routeYAML("custom", "custom.example.com", rule{backend: "up"}),
		routeYAML("open", "open.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("dead", dead),
		policyYAML("closed", routeTarget("closed"), "", "dead", "failureMode: FailClosed"),
		policyYAML("custom", routeTarget("custom"), "", "dead", "statusOnError: 503"),
		policyYAML("open", routeTarget("open"), "", "dead", "failureMode: FailOpen"),
	))
	for _, tc := range []struct {
		host string
		want int
	}{{"closed.example.com", 500}, {"custom.example.com", 503}} {
		if r := g.get(tc.host, "/"); r.Status != tc.want {
			t.Errorf("%s: status %d, want %d", tc.host, r.Status, tc.want)
		}
		up.none(t)
	}
	r := g.get("open.example.com", "/through", "x-probe", "open")
	if r.Status != 200 || decode(t, r).Name != "up" {
		t.Fatalf("fail-open: status %d %s", r.Status, r.Body)
	}
	if e := up.seen(t); e.Path != "/through" || e.Header.Get("X-Probe") != "open" {
		t.Errorf("upstream saw %s %v", e.Path, e.Header)
	}
}

func TestHangingProcessorTimesOut(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return hang })
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		routeYAML("open", "open.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", routeTarget("r"), "", "p", "messageTimeout: 300ms\nstatusOnError: 503"),
		policyYAML("open", routeTarget("open"), "", "p", "messageTimeout: 300ms\nfailureMode: FailOpen"),
	))
	start := time.Now()
	r := g.get("a.example.com", "/slow")
	took := time.Since(start)
	if r.Status != 504 {
		t.Errorf("status %d, want 504 (a timeout is 504 whatever statusOnError says)", r.Status)
	}
	if took < timeout || took > timeout+3*time.Second {
		t.Errorf("answered after %v, want about %v", took, timeout)
	}
	up.none(t)
	st := p.only(t, 1)
	if k := st.kinds(); len(k) != 1 || k[0] != "request_headers" {
		t.Errorf("processor received %v", k)
	}

	// Fail-open: the request continues without the processor after the timeout.
	start = time.Now()
	r = g.get("open.example.com", "/slow")
	if r.Status != 200 || time.Since(start) < timeout {
		t.Errorf("fail-open: status %d after %v", r.Status, time.Since(start))
	}
	up.seen(t)
}
