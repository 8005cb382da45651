package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// benchHeaders are what a typical API client sends.
var benchHeaders = [][2]string{
	{"User-Agent", "bench-client/1.0"},
	{"Accept", "application/json"},
	{"Accept-Encoding", "gzip"},
	{"Authorization", "Bearer 0123456789abcdef"},
	{"X-Request-Id", "7f0c7d5e-1b1e-4c59-9d0b-2f1b4f9c1a11"},
}

// BenchmarkRequestPath is the whole request path through a real gateway on loopback:
// without a processor, with a header-only processor (request and response headers Send,
// bodies None, answered with empty CONTINUEs), and the floor: the same exchange with the
// same processor from a bare gRPC client.
func BenchmarkRequestPath(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	b.Cleanup(up.Close)
	p := newProc(b, "p", nil)
	p.quiet = true
	g := startGateway(b, docs(gatewayYAML,
		routeYAML("plain", "plain.example.com", rule{backend: "up"}),
		routeYAML("proc", "proc.example.com", rule{backend: "up"}),
		backendYAML("up", up.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", routeTarget("proc"), "", "p",
			"processingOptions: {requestHeaderMode: Send, responseHeaderMode: Send, requestBodyMode: None, responseBodyMode: None}"),
	))

	perOp := map[string]time.Duration{}
	record := func(name string, b *testing.B) { perOp[name] = b.Elapsed() / time.Duration(b.N) }

	viaGateway := func(host string) func(b *testing.B) {
		return func(b *testing.B) {
			req, err := http.NewRequest("GET", g.url("/api/v1/items?page=2"), nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Host = host
			for _, h := range benchHeaders {
				req.Header.Set(h[0], h[1])
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := g.client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			record(host, b)
		}
	}
	b.Run("no-processor", viaGateway("plain.example.com"))
	b.Run("header-only-processor", viaGateway("proc.example.com"))
	b.Run("grpc-floor", func(b *testing.B) {
		conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		client := extprocv3.NewExternalProcessorClient(conn)
		reqMsg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{EndOfStream: true, Headers: headerMap(append([][2]string{
				{":method", "GET"}, {":scheme", "http"}, {":authority", "proc.example.com"}, {":path", "/api/v1/items?page=2"},
			}, benchHeaders...))}}}
		respMsg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap([][2]string{
				{":status", "200"}, {"content-type", "application/json"}, {"cache-control", "no-store"}, {"content-length", "11"},
			})}}}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			s, err := client.Process(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range []*extprocv3.ProcessingRequest{reqMsg, respMsg} {
				if err := s.Send(m); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Recv(); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.CloseSend(); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Recv(); err != io.EOF {
				b.Fatalf("stream end: %v", err)
			}
		}
		record("floor", b)
	})
	plain, proc, floor := perOp["plain.example.com"], perOp["proc.example.com"], perOp["floor"]
	if plain > 0 && proc > 0 && floor > 0 {
		b.Logf("no-processor %v, header-only %v, grpc floor %v: (header-only - no-processor) / floor = %.2f",
			plain, proc, floor, float64(proc-plain)/float64(floor))
	}
}

func headerMap(kv [][2]string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for _, h := range kv {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: strings.ToLower(h[0]), RawValue: []byte(h[1])})
	}
	return m
}
