package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/testutil"
)

// wait bounds every blocking step of a test.
const wait = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testGateway is a running Gateway and the base URL of its first port.
type testGateway struct {
	*Gateway
	URL  string // http://127.0.0.1:port of cfg.Ports[0]
	Port int32
}

// freePort returns a port that was free a moment ago.
func freePort(t testing.TB) int32 { return int32(testutil.FreePort(t)) }

// startGateway serves cfg on 127.0.0.1. Ports numbered 0 get a free port (retried if another
// test takes it first). The gateway is shut down when the test ends.
func startGateway(t testing.TB, opts Options, cfg *ir.Config) *testGateway {
	t.Helper()
	opts.BindAddress = "127.0.0.1"
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g := New(opts)
	var unset []*ir.Port
	for _, p := range cfg.Ports {
		if p.Number == 0 {
			unset = append(unset, p)
		}
	}
	var err error
	for range 5 {
		for _, p := range unset {
			p.Number = freePort(t)
		}
		if err = g.Apply(cfg, nil); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	tg := &testGateway{Gateway: g}
	if len(cfg.Ports) > 0 {
		tg.Port = cfg.Ports[0].Number
		tg.URL = "http://127.0.0.1:" + strconv.Itoa(int(tg.Port))
	}
	return tg
}

// newClient returns an HTTP/1.1 client whose idle connections close when the test ends.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		Protocols:           new(http.Protocols),
	}
	tr.Protocols.SetHTTP1(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   wait,
		// Redirects are asserted, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// newH2CClient returns a client speaking HTTP/2 with prior knowledge over cleartext.
func newH2CClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// newBackend starts an httptest server closed when the test ends.
func newBackend(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// backendOf returns the ir.Backend for test servers.
func backendOf(t testing.TB, name string, srvs ...*httptest.Server) *ir.Backend {
	t.Helper()
	b := &ir.Backend{Name: name, Protocol: ir.UpstreamHTTP1}
	for _, s := range srvs {
		b.Endpoints = append(b.Endpoints, endpointOf(t, s.Listener.Addr()))
	}
	return b
}

func endpointOf(t testing.TB, a net.Addr) ir.Endpoint {
	t.Helper()
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		t.Fatalf("not a TCP address: %v", a)
	}
	return ir.Endpoint{Host: ta.IP.String(), Port: int32(ta.Port)}
}

// seen is what the echo backend reports about the request it received.
type seen struct {
	Backend  string      `json:"backend"`
	Method   string      `json:"method"`
	Host     string      `json:"host"`
	Path     string      `json:"path"`
	RawPath  string      `json:"rawPath"`
	Query    string      `json:"query"`
	Proto    string      `json:"proto"`
	Header   http.Header `json:"header"`
	Trailer  http.Header `json:"trailer"`
	BodySize int         `json:"bodySize"`
}

// echoBackend answers with a JSON description of the request it got.
func echoBackend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	return newBackend(t, echoHandler(name))
}

func echoHandler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		s := seen{Backend: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath,
			Query: r.URL.RawQuery, Proto: r.Proto, Header: r.Header, Trailer: r.Trailer, BodySize: int(n)}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(s)
	}
}

// do sends a request and returns the response with its body read.
func do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// get sends a GET with the given Host (if not empty) and path.
func get(t testing.TB, c *http.Client, base, host, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	return do(t, c, req)
}

// decodeSeen parses the echo backend's report.
func decodeSeen(t testing.TB, body string) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("echo body %q: %v", body, err)
	}
	return s
}

// Config builders.

func simpleConfig(routes ...*ir.Route) *ir.Config {
	return &ir.Config{Ports: []*ir.Port{httpPort(listener("l", "", vhostOf("", routes...)))}}
}

func httpPort(ls ...*ir.Listener) *ir.Port {
	return &ir.Port{Protocol: ir.ProtocolHTTP, Listeners: ls}
}

func listener(name, hostname string, vhs ...*ir.VirtualHost) *ir.Listener {
	return &ir.Listener{Name: "default/gw/" + name, Gateway: "default/gw", SectionName: name, Hostname: hostname, VirtualHosts: vhs}
}

func vhostOf(hostname string, routes ...*ir.Route) *ir.VirtualHost {
	return &ir.VirtualHost{Hostname: hostname, Routes: routes}
}

// prefixRoute returns a route matching path prefix to the backend.
func prefixRoute(name, prefix string, b *ir.Backend) *ir.Route {
	return &ir.Route{
		Name:     name,
		Match:    ir.Match{PathType: ir.PathPrefix, Path: prefix},
		Backends: []ir.WeightedBackend{{Weight: 1, Backend: b}},
	}
}

// eventually polls cond until it holds or the wait runs out.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recvWithin receives from ch or fails the test after the wait.
func recvWithin[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// newH2CBackend starts a backend that speaks only HTTP/2 over cleartext (prior knowledge).
func newH2CBackend(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// clientFor returns a client speaking proto ("h1" or "h2c").
func clientFor(t testing.TB, proto string) *http.Client {
	if proto == "h2c" {
		return newH2CClient(t)
	}
	return newClient(t)
}

// dialGateway opens a raw TCP connection to the gateway's first port, with a deadline.
// rawRequest sends raw, a request written by hand, on a new connection to g and returns
// the response, its body closed.
func rawRequest(t testing.TB, g *testGateway, raw string) *http.Response {
	t.Helper()
	conn := dialGateway(t, g)
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func dialGateway(t testing.TB, g *testGateway) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(g.URL, "http://"), wait)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(wait))
	t.Cleanup(func() { conn.Close() })
	return conn
}
