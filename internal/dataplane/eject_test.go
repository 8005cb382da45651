package dataplane

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-gateway/sluice/internal/ir"
)

func TestEjection(t *testing.T) {
	t.Parallel()
	b := &balancer{addrs: []string{"a:1", "b:1", "c:1"}}
	b.health = make([]endpointHealth, 3)
	picks := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			got[b.addrs[b.pickIndex()]]++
		}
		return got
	}
	if got := picks(30); got["a:1"] != 10 || got["b:1"] != 10 || got["c:1"] != 10 {
		t.Fatalf("round robin %v", got)
	}
	if !b.connectFailed(1) || b.connectFailed(1) {
		t.Fatal("a failure ejects once; another failure while ejected is not a new ejection")
	}
	if got := picks(30); got["b:1"] != 0 || got["a:1"]+got["c:1"] != 30 {
		t.Fatalf("with b ejected %v", got)
	}
	if d := time.Duration(b.health[1].until.Load() - time.Now().UnixNano()); d <= ejectBase-time.Second || d > ejectBase {
		t.Errorf("first ejection for %v, want %v", d, ejectBase)
	}
	// Ejected again after it came back: twice as long, up to ejectMax.
	for s, want := range []time.Duration{2 * ejectBase, 4 * ejectBase, 8 * ejectBase, ejectMax, ejectMax} {
		b.health[1].until.Store(1) // the ejection ended
		b.connectFailed(1)
		if d := time.Duration(b.health[1].until.Load() - time.Now().UnixNano()); d <= want-time.Second || d > want {
			t.Errorf("ejection %d for %v, want %v", s+2, d, want)
		}
	}
	// A request finishing on an older connection during the ejection proves nothing.
	b.connected(1)
	if got := picks(30); got["b:1"] != 0 {
		t.Fatalf("b answered during its ejection: %v, want it still out", got)
	}
	// Answering after its ejection ended, it is back, and its strikes are forgotten.
	b.health[1].until.Store(1)
	b.connected(1)
	if got := picks(30); got["b:1"] != 10 || b.health[1].strikes.Load() != 0 {
		t.Fatalf("after b answered %v (strikes %d), want it back in turn", got, b.health[1].strikes.Load())
	}
	// Every endpoint ejected: all are still tried in turn.
	for i := range b.addrs {
		b.connectFailed(i)
	}
	if got := picks(30); got["a:1"] != 10 || got["b:1"] != 10 || got["c:1"] != 10 {
		t.Fatalf("all ejected %v, want round robin", got)
	}
}

// A backend with a live and a dead endpoint: every request is answered by the live one,
// the one that met the dead endpoint first included (nothing of it was sent), and the
// dead endpoint is ejected once.
func TestConnectFailureGoesToAnotherEndpoint(t *testing.T) {
	t.Parallel()
	live := echoBackend(t, "live")
	dead := ir.Endpoint{Host: "127.0.0.1", Port: int32(freePort(t))}
	b := backendOf(t, "pair", live)
	b.Endpoints = append([]ir.Endpoint{dead}, b.Endpoints...)
	reg := prometheus.NewRegistry()
	g := startGateway(t, Options{Metrics: NewMetrics(reg)}, simpleConfig(prefixRoute("r", "/", b)))
	c := newClient(t)
	for i := range 10 {
		req, _ := http.NewRequest(http.MethodPost, g.URL+"/", strings.NewReader("body"))
		resp, body := do(t, c, req)
		if resp.StatusCode != http.StatusOK || decodeSeen(t, body).BodySize != 4 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	var m dto.Metric
	if err := g.metrics.ejections.WithLabelValues("pair", fmt.Sprintf("127.0.0.1:%d", dead.Port)).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("%v ejections of the dead endpoint, want 1", n)
	}
}

func TestEndpointFault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, true},
		{&net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, true},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)}, false},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}, false},
	} {
		if got := endpointFault(&dialError{err: tc.err}); got != tc.want {
			t.Errorf("endpointFault(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
