package dataplane

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

func TestGRPCLocalReply(t *testing.T) {
	t.Parallel()
	withStatus := filter.Reply(http.StatusForbidden, "ext_proc_immediate_response", "")
	withStatus.Header.Set("Grpc-Status", "7")
	tests := []struct {
		name        string
		reply       *filter.LocalReply
		status, msg string
	}{
		{"no route", filter.Reply(http.StatusNotFound, "route_not_found", "no route matches this request\n"), "12", "no route matches this request"},
		{"backend not resolved", errBackendNotResolved(), "14", "the route's backend could not be resolved"},
		{"connect failure", filter.Reply(http.StatusServiceUnavailable, "upstream_connect_failure", "upstream connect error\n"), "14", "upstream connect error"},
		{"timeout", filter.Reply(http.StatusGatewayTimeout, "upstream_timeout", ""), "14", ""},
		{"bad request", filter.Reply(http.StatusBadRequest, "x", "bad"), "13", "bad"},
		{"unauthenticated", filter.Reply(http.StatusUnauthorized, "x", ""), "16", ""},
		{"other", filter.Reply(http.StatusInternalServerError, "x", "100% broken\tnow ✓"), "2", "100%25 broken%09now %E2%9C%93"},
		{"status set by a processor", withStatus, "7", ""},
	}
	for _, tc := range tests {
		got := grpcLocalReply(tc.reply)
		if got.Status != http.StatusOK || len(got.Body) != 0 || got.Header.Get("Content-Type") != "application/grpc" {
			t.Errorf("%s: status %d, body %q, content type %q; want a trailers-only gRPC response", tc.name, got.Status, got.Body, got.Header.Get("Content-Type"))
		}
		if s, m := got.Header.Get("Grpc-Status"), got.Header.Get("Grpc-Message"); s != tc.status || m != tc.msg {
			t.Errorf("%s: grpc-status %q, grpc-message %q; want %q, %q", tc.name, s, m, tc.status, tc.msg)
		}
		if got.Details != tc.reply.Details {
			t.Errorf("%s: details %q, want %q", tc.name, got.Details, tc.reply.Details)
		}
	}
}

func TestIsGRPC(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/grpc-web+proto": false, "application/json": false, "": false,
	} {
		r := &http.Request{Header: http.Header{"Content-Type": {ct}}}
		if got := isGRPC(r); got != want {
			t.Errorf("isGRPC(%q) = %v, want %v", ct, got, want)
		}
	}
}

// TestGRPCAccessLog: the access log line of a gRPC call carries its grpc-status, from the
// backend's trailers or from a local reply's trailers-only response.
func TestGRPCAccessLog(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	backend := newH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		w.Header().Set("Grpc-Status", "5")
	}))
	b := backendOf(t, "grpc", backend)
	b.Protocol = ir.UpstreamH2C
	g := startGateway(t, Options{AccessLog: slog.New(slog.NewJSONHandler(&buf, nil))},
		simpleConfig(prefixRoute("ns/route/0/0", "/svc.Found", b)))
	c := newH2CClient(t)
	for _, path := range []string{"/svc.Found/Get", "/svc.Missing/Get"} {
		req, _ := http.NewRequest(http.MethodPost, g.URL+path, strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		resp, _ := do(t, c, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d, want 200 (gRPC)", path, resp.StatusCode)
		}
	}
	eventually(t, "two access log lines", func() bool { return len(buf.lines()) >= 2 })
	want := map[string]string{"/svc.Found/Get": "5", "/svc.Missing/Get": "12"}
	for _, l := range buf.lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if p := m["path"].(string); m["grpc_status"] != want[p] {
			t.Errorf("%s: grpc_status %v, want %s", p, m["grpc_status"], want[p])
		}
	}
}
