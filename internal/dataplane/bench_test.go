package dataplane

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// bigRouteConfig has 10,000 routes over 1,000 hosts (every tenth a wildcard), 10 routes
// per host mixing Exact, PathPrefix, method and header matches.
func bigRouteConfig() *ir.Config {
	b := &ir.Backend{Name: "b", Protocol: ir.UpstreamHTTP1, Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: 1}}}
	to := []ir.WeightedBackend{{Weight: 1, Backend: b}}
	var vhs []*ir.VirtualHost
	for h := range 1000 {
		name := fmt.Sprintf("host-%d.example.com", h)
		if h%10 == 9 {
			name = fmt.Sprintf("*.wild-%d.example.com", h)
		}
		vh := &ir.VirtualHost{Hostname: name}
		for r := range 10 {
			m := ir.Match{PathType: ir.PathPrefix, Path: fmt.Sprintf("/api/v%d", r)}
			switch r % 4 {
			case 0:
				m = ir.Match{PathType: ir.PathExact, Path: fmt.Sprintf("/exact/%d", r)}
			case 1:
				m.Method = http.MethodPost
			case 2:
				m.Headers = []ir.StringMatch{{Type: ir.MatchExact, Name: "X-Tenant", Value: fmt.Sprintf("tenant-%d", r)}}
			}
			vh.Routes = append(vh.Routes, &ir.Route{Name: fmt.Sprintf("%s/%d", name, r), Match: m, Backends: to})
		}
		// The last route of each host matches a header, so that a request for it tries
		// all ten.
		vh.Routes[9].Match = ir.Match{PathType: ir.PathPrefix, Path: "/api/v9",
			Headers: []ir.StringMatch{{Type: ir.MatchExact, Name: "X-Tenant", Value: "last"}}}
		vhs = append(vhs, vh)
	}
	return &ir.Config{Ports: []*ir.Port{{Number: 8080, Protocol: ir.ProtocolHTTP, Listeners: []*ir.Listener{
		{Name: "default/gw/http", VirtualHosts: vhs},
	}}}}
}

func BenchmarkMatch10kRoutes(b *testing.B) {
	ups := NewUpstreams(UpstreamOptions{})
	defer ups.Close()
	snap, err := Compile(bigRouteConfig(), ups, nil)
	if err != nil {
		b.Fatal(err)
	}
	pt := snap.ports[ir.PortKey{Number: 8080}]
	for _, tc := range []struct{ name, host, path, want string }{
		{"exact-host-last-route", "Host-500.example.com:8080", "/api/v9/items", "host-500.example.com/9"},
		{"wildcard-host-last-route", "a.wild-509.example.com", "/api/v9/items", "*.wild-509.example.com/9"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://x"+tc.path, nil)
			req.Host = tc.host
			req.Header.Set("X-Tenant", "last")
			match := func() *route {
				var hb hostBuf
				return pt.selectListener(hb.normalize(req.Host)).match(req)
			}
			if rt := match(); rt == nil || rt.ir.Name != tc.want {
				b.Fatalf("matched %v, want %s", rt, tc.want)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if match() == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}

// TestMatchAllocatesNothing pins the benchmark's zero-allocation property in the test run.
func TestMatchAllocatesNothing(t *testing.T) {
	// Not parallel: testing.AllocsPerRun refuses to run beside other tests.
	ups := NewUpstreams(UpstreamOptions{})
	defer ups.Close()
	snap, err := Compile(bigRouteConfig(), ups, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt := snap.ports[ir.PortKey{Number: 8080}]
	req := httptest.NewRequest(http.MethodGet, "http://x/api/v9/items?x=1", nil)
	req.Host = "HOST-5.example.com"
	req.Header.Set("X-Tenant", "last")
	allocs := testing.AllocsPerRun(100, func() {
		var hb hostBuf
		if pt.selectListener(hb.normalize(req.Host)).match(req) == nil {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("matching allocates %v times per request", allocs)
	}
}

const benchBody = `{"hello":"world"}`

func benchGateway(b *testing.B) (*testGateway, *http.Client) {
	up := newBackend(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchBody)
	}))
	g := startGateway(b, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(b, "b", up))))
	return g, newClient(b)
}

func proxyOnce(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n != int64(len(benchBody)) {
		b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
	}
}

// BenchmarkProxy is one whole proxied request: client → gateway → in-process backend over
// loopback, HTTP/1.1 keep-alive on both hops.
func BenchmarkProxy(b *testing.B) {
	g, c := benchGateway(b)
	url := g.URL + "/bench"
	proxyOnce(b, c, url)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		proxyOnce(b, c, url)
	}
}

func BenchmarkProxyParallel(b *testing.B) {
	g, c := benchGateway(b)
	url := g.URL + "/bench"
	proxyOnce(b, c, url)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			proxyOnce(b, c, url)
		}
	})
}

// BenchmarkDirectBaseline is the same request without the gateway, for comparison.
func BenchmarkDirectBaseline(b *testing.B) {
	up := newBackend(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchBody)
	}))
	c := newClient(b)
	proxyOnce(b, c, up.URL)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		proxyOnce(b, c, up.URL)
	}
}
