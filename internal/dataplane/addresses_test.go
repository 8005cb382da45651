package dataplane

import (
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// TestPortsOnOwnAddresses serves two configurations of one port number on two loopback
// addresses (Gateways with addresses of their own): each address answers with its own
// routes, and dropping one address leaves the other serving.
func TestPortsOnOwnAddresses(t *testing.T) {
	t.Parallel()
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	portOn := func(addr, name string, backend *ir.Backend) *ir.Port {
		p := httpPort(listener(name, "", vhostOf("", prefixRoute(name, "/", backend))))
		p.Address = addr
		return p
	}
	cfg := &ir.Config{Ports: []*ir.Port{
		portOn("127.0.0.2", "a", backendOf(t, "a", a)),
		portOn("127.0.0.3", "b", backendOf(t, "b", b)),
	}}
	g := startGateway(t, Options{}, cfg)
	port := strconv.Itoa(int(cfg.Ports[0].Number))
	if cfg.Ports[1].Number != cfg.Ports[0].Number {
		// startGateway picks a free port per Port; make both use the first one.
		cfg.Ports[1].Number = cfg.Ports[0].Number
		if err := g.Apply(cfg, nil); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	c := newClient(t)
	for _, tc := range []struct{ addr, backend string }{{"127.0.0.2", "a"}, {"127.0.0.3", "b"}} {
		resp, body := get(t, c, "http://"+net.JoinHostPort(tc.addr, port), "", "/")
		if resp.StatusCode != 200 || decodeSeen(t, body).Backend != tc.backend {
			t.Fatalf("%s: status %d, body %s; want backend %s", tc.addr, resp.StatusCode, body, tc.backend)
		}
	}
	if got := fmt.Sprint(len(g.Sockets())); got != "2" {
		t.Fatalf("sockets: %v", g.Sockets())
	}

	cfg = &ir.Config{Ports: []*ir.Port{cfg.Ports[1]}}
	if err := g.Apply(cfg, nil); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	c.CloseIdleConnections()
	eventually(t, "127.0.0.2 closed", func() bool {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.2", port), wait)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	resp, body := get(t, c, "http://"+net.JoinHostPort("127.0.0.3", port), "", "/")
	if resp.StatusCode != 200 || decodeSeen(t, body).Backend != "b" {
		t.Fatalf("127.0.0.3 after the change: status %d, body %s", resp.StatusCode, body)
	}
}
