package dataplane

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// syncBuffer is a bytes.Buffer safe for the access log's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{AccessLog: slog.New(slog.NewJSONHandler(&buf, nil))},
		simpleConfig(prefixRoute("ns/route/0/0", "/ok", b)))
	c := newClient(t)
	_, okBody := get(t, c, g.URL, "log.test", "/ok?q=1")
	get(t, c, g.URL, "log.test", "/missing")
	eventually(t, "two access log lines", func() bool { return len(buf.lines()) >= 2 })
	lines := buf.lines()
	if len(lines) != 2 {
		t.Fatalf("%d access log lines, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	byPath := map[string]map[string]any{}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		byPath[m["path"].(string)] = m
	}
	ok, missing := byPath["/ok?q=1"], byPath["/missing"]
	if ok == nil || missing == nil {
		t.Fatalf("lines by path: %v", byPath)
	}
	want := map[string]any{
		"msg": "request", "route": "ns/route/0/0", "backend": "echo", "status": 200.0,
		"bytes_sent": float64(len(okBody)), "method": "GET", "host": "log.test",
		"id": decodeSeen(t, okBody).Header.Get("X-Request-Id"),
	}
	for k, v := range want {
		if ok[k] != v {
			t.Errorf("ok line %s = %v, want %v", k, ok[k], v)
		}
	}
	for _, m := range []map[string]any{ok, missing} {
		if d, isNum := m["duration_ms"].(float64); !isNum || d < 0 {
			t.Errorf("duration_ms = %v", m["duration_ms"])
		}
	}
	if missing["status"] != 404.0 || missing["route"] != "" || missing["details"] != "route_not_found" {
		t.Errorf("404 line: %v", missing)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	refused := &ir.Backend{Name: "refused", Protocol: ir.UpstreamHTTP1,
		Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: freePort(t)}}}
	g := startGateway(t, Options{Metrics: NewMetrics(reg)}, simpleConfig(
		prefixRoute("route-ok", "/ok", b),
		prefixRoute("route-down", "/down", refused),
	))
	c := newClient(t)
	for range 3 {
		get(t, c, g.URL, "", "/ok")
	}
	get(t, c, g.URL, "", "/down")
	want := []string{
		`sluice_requests_total{backend="echo",code="200",route="route-ok"} 3`,
		`sluice_requests_total{backend="refused",code="503",route="route-down"} 1`,
		`sluice_upstream_errors_total{backend="refused",kind="connect",route="route-down"} 1`,
		`sluice_request_duration_seconds_count{backend="echo",route="route-ok"} 3`,
	}
	var text string
	// The counters move when the handler returns, just after the client has its answer.
	eventually(t, "the metrics", func() bool {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		text = rec.Body.String()
		for _, w := range want {
			if !strings.Contains(text, w+"\n") {
				return false
			}
		}
		return true
	})
}

// TestRefusedRequestsLoggedAndCounted checks that a request the lean HTTP/1.1 server
// refuses before routing (here Content-Length with Transfer-Encoding) still gets an
// access log line and a count, as every other answer does.
func TestRefusedRequestsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	reg := prometheus.NewRegistry()
	g := startGateway(t, Options{HTTP1Server: HTTP1Lean, AccessLog: slog.New(slog.NewJSONHandler(&buf, nil)), Metrics: NewMetrics(reg)},
		simpleConfig(prefixRoute("r", "/", backendOf(t, "echo", echoBackend(t, "echo")))))
	conn := dialGateway(t, g)
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	eventually(t, "an access log line", func() bool { return len(buf.lines()) == 1 })
	var line map[string]any
	if err := json.Unmarshal([]byte(buf.lines()[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line["status"] != 400.0 || line["details"] != "refused: Content-Length with Transfer-Encoding" || line["client"] != conn.LocalAddr().String() {
		t.Errorf("access log line %v", line)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `sluice_requests_total{backend="",code="400",route=""} 1`; !strings.Contains(rec.Body.String(), want+"\n") {
		t.Errorf("metrics lack %s:\n%s", want, rec.Body.String())
	}
}
