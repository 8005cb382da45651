package dataplane

import (
	"bufio"
	"github.com/sluice-gateway/sluice/internal/ir"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHTTP1Servers serves a plain port with each HTTP/1.1 server (the whole suite runs
// with the default one, or the one $SLUICE_HTTP1_SERVER names; this keeps both covered):
// HTTP/1.1 and prior-knowledge h2c on the same port, and ambiguous framing refused
// before the upstream sees it.
func TestHTTP1Servers(t *testing.T) {
	t.Parallel()
	for _, name := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testHTTP1Server(t, name)
		})
	}
}

func testHTTP1Server(t *testing.T, name string) {
	var hits atomic.Int32
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	}))
	g := startGateway(t, Options{HTTP1Server: name}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	g.mu.Lock()
	_, isNetHTTP := g.servers[ir.PortKey{Number: g.Port}].srv.(*http.Server)
	g.mu.Unlock()
	if isNetHTTP != (name == HTTP1NetHTTP) {
		t.Fatalf("served by net/http: %v", isNetHTTP)
	}
	for _, proto := range []string{"h1", "h2c"} {
		c := clientFor(t, proto)
		resp, err := c.Post(g.URL+"/"+proto, "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "POST /" + proto + " body"; string(b) != want {
			t.Errorf("%s: got %q, want %q", proto, b, want)
		}
	}
	before := hits.Load()
	conn := dialGateway(t, g)
	_, _ = io.WriteString(conn, "POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Errorf("CL+TE: %d close=%v, want 400 and close", resp.StatusCode, resp.Close)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if extra, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("a further response (%d) came back", extra.StatusCode)
	}
	if hits.Load() != before {
		t.Errorf("the upstream saw the refused request")
	}
}
