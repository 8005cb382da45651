package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-gateway/sluice/internal/testutil"
)

// grpcBackend is a gRPC server (h2c) with the health service, answering status for
// every service name, that records the metadata of the calls it gets.
type grpcBackend struct {
	addr   string
	health *health.Server
	quiet  bool // do not record (benchmarks)
	mu     sync.Mutex
	md     []metadata.MD
}

func newGRPCBackend(t testing.TB, st healthpb.HealthCheckResponse_ServingStatus) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{addr: ln.Addr().String()}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if b.quiet {
			return h(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		b.mu.Lock()
		b.md = append(b.md, md)
		b.mu.Unlock()
		return h(ctx, req)
	}))
	hs := health.NewServer()
	b.health = hs
	hs.SetServingStatus("", st)
	hs.SetServingStatus("app", st)
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return b
}

func (b *grpcBackend) last(t *testing.T) metadata.MD {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.md) == 0 {
		t.Fatal("the backend got no call")
	}
	return b.md[len(b.md)-1]
}

// TestGRPCRoute calls through the gateway with a real gRPC client: method and header
// matches choose the backend (spoken to over h2c although its Backend says HTTP/1.1),
// the route's header filter reaches it, a server stream's messages arrive as sent, an unmatched method is UNIMPLEMENTED, a backend
// that refuses connections UNAVAILABLE, and a processor attached to one rule of the GRPCRoute
// answers a call itself with a gRPC status.
func TestGRPCRoute(t *testing.T) {
	t.Parallel()
	serving := newGRPCBackend(t, healthpb.HealthCheckResponse_SERVING)
	notServing := newGRPCBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	p := newProc(t, "deny", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		for _, h := range m.GetRequestHeaders().GetHeaders().GetHeaders() {
			if h.GetKey() == "x-deny" {
				return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
					ImmediateResponse: &extprocv3.ImmediateResponse{
						Status:     &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
						GrpcStatus: &extprocv3.GrpcStatus{Status: uint32(codes.PermissionDenied)},
						Details:    "denied by the processor",
						Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
							{Header: &corev3.HeaderValue{Key: "grpc-message", RawValue: []byte("tenant not allowed")}}}},
					}}}
			}
		}
		return nil
	})
	cfg := docs(gatewayYAML,
		backendYAML("serving", serving.addr), backendYAML("not-serving", notServing.addr),
		backendYAML("refused", fmt.Sprintf("127.0.0.1:%d", freePort(t))),
		procBackendYAML("deny", p.addr),
		`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: health, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example.com]
  rules:
  - name: check-b
    matches:
    - method: {service: grpc.health.v1.Health, method: Check}
      headers: [{name: x-backend, value: b}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: check-b}]}
    backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: not-serving}]
  - matches: [{method: {service: grpc.health.v1.Health}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: health}]}
    backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: serving}]
  - matches: [{method: {service: missing.Service}}]
    backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: refused}]
`,
		policyYAML("deny", target{kind: "GRPCRoute", name: "health", section: "check-b"}, "", "deny", ""))
	g := startGateway(t, cfg)

	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", g.port),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("grpc.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	call := func(md ...string) (*healthpb.HealthCheckResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
		return client.Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
	}

	tests := []struct {
		name    string
		md      []string
		want    healthpb.HealthCheckResponse_ServingStatus
		backend *grpcBackend
		route   string
	}{
		{name: "service match", want: healthpb.HealthCheckResponse_SERVING, backend: serving, route: "health"},
		{name: "method and header match", md: []string{"x-backend", "b"}, want: healthpb.HealthCheckResponse_NOT_SERVING, backend: notServing, route: "check-b"},
	}
	for _, tc := range tests {
		res, err := call(tc.md...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.GetStatus() != tc.want {
			t.Errorf("%s: status %v, want %v (the wrong backend answered)", tc.name, res.GetStatus(), tc.want)
		}
		if got := tc.backend.last(t).Get("x-route"); len(got) != 1 || got[0] != tc.route {
			t.Errorf("%s: the backend saw x-route %q, want %q", tc.name, got, tc.route)
		}
	}

	// A server stream: each message reaches the client as the backend sends it.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := watch.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first streamed message %v, %v; want SERVING", m, err)
	}
	serving.health.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := watch.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second streamed message %v, %v; want NOT_SERVING", m, err)
	}
	cancel()

	failures := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{name: "no matching method", code: codes.Unimplemented, call: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			return conn.Invoke(ctx, "/other.Service/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
		}},
		{name: "backend refuses connections", code: codes.Unavailable, msg: "upstream connect error", call: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			return conn.Invoke(ctx, "/missing.Service/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
		}},
		{name: "processor answers", code: codes.PermissionDenied, msg: "tenant not allowed", call: func() error {
			_, err := call("x-backend", "b", "x-deny", "1")
			return err
		}},
	}
	for _, tc := range failures {
		st := status.Convert(tc.call())
		if st.Code() != tc.code || tc.msg != "" && st.Message() != tc.msg {
			t.Errorf("%s: %v %q, want %v %q", tc.name, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
}

// BenchmarkGRPCRoute is a unary gRPC call (health Check) through the gateway's
// GRPCRoute, h2c on both sides, against the same call made directly to the backend.
func BenchmarkGRPCRoute(b *testing.B) {
	backend := newGRPCBackend(b, healthpb.HealthCheckResponse_SERVING)
	backend.quiet = true
	g := startGateway(b, docs(gatewayYAML, backendYAML("backend", backend.addr), `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: health, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: grpc.health.v1.Health, method: Check}}]
    backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: backend}]
`))
	for _, tc := range []struct{ name, target string }{
		{"direct", backend.addr},
		{"via-gateway", fmt.Sprintf("127.0.0.1:%d", g.port)},
	} {
		conn, err := grpc.NewClient(tc.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		client := healthpb.NewHealthClient(conn)
		check := func(b *testing.B) {
			if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "app"}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				check(b)
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					check(b)
				}
			})
		})
		conn.Close()
	}
}

// TestGRPCRouteHTTPS: on an HTTPS listener, a gRPC client reaches a GRPCRoute over TLS
// with HTTP/2 chosen by ALPN, as GRPCRoute requires of HTTPS listeners.
func TestGRPCRouteHTTPS(t *testing.T) {
	t.Parallel()
	backend := newGRPCBackend(t, healthpb.HealthCheckResponse_SERVING)
	ca := testutil.NewCA(t)
	_, certPEM, keyPEM := ca.Issue(t, []string{"grpc.example.com"})
	g := startGateway(t, docs(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - name: https
    port: {{PORT}}
    protocol: HTTPS
    tls: {certificateRefs: [{name: cert}]}
`, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: default}
type: kubernetes.io/tls
stringData:
  tls.crt: %q
  tls.key: %q
`, certPEM, keyPEM), backendYAML("backend", backend.addr), `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: health, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example.com]
  rules:
  - backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: backend}]
`))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", g.port),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "grpc.example.com"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check over TLS: %v, %v", res, err)
	}
}
