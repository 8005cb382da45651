package sampleproc

import (
	"context"
	"net"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	conn := startServer(t, Options{})
	client := healthpb.NewHealthClient(conn)

	tests := []struct {
		service  string
		want     healthpb.HealthCheckResponse_ServingStatus
		wantCode codes.Code
	}{
		{service: "", want: healthpb.HealthCheckResponse_SERVING},
		{service: "envoy.service.ext_proc.v3.ExternalProcessor", want: healthpb.HealthCheckResponse_SERVING},
		{service: "no.such.Service", wantCode: codes.NotFound},
	}
	for _, tt := range tests {
		t.Run("service="+tt.service, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: tt.service})
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("Check error %v, want code %v", err, tt.wantCode)
			}
			if err == nil && resp.GetStatus() != tt.want {
				t.Errorf("Check status %v, want %v", resp.GetStatus(), tt.want)
			}
		})
	}
}

// TestShutdownCutsOpenStreams checks that cancelling Serve's context does not wait forever
// for a gateway that keeps a stream open, and that the stream's owner learns about it.
func TestShutdownCutsOpenStreams(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, lis, Options{ShutdownGrace: 50 * time.Millisecond}) }()

	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()

	sctx, scancel := context.WithTimeout(t.Context(), waitTimeout)
	defer scancel()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(sctx)
	if err != nil {
		t.Fatalf("opening stream: %v", err)
	}
	// One answered message proves the stream is established on the server.
	if err := stream.Send(reqHeaders(headerMap(":path", "/"), false)); err != nil {
		t.Fatalf("send: %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("recv: %v", err)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Serve did not return within %v", waitTimeout)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("open stream got %v after shutdown, want Unavailable", err)
	}
}

func TestListenAndServe(t *testing.T) {
	t.Parallel()

	t.Run("stops when the context is cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- ListenAndServe(ctx, "127.0.0.1:0", Options{}) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ListenAndServe returned %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("ListenAndServe did not return after its context ended")
		}
	})

	t.Run("already cancelled context", func(t *testing.T) {
		t.Parallel()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := Serve(ctx, lis, Options{}); err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	})

	t.Run("bad address", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		if err := ListenAndServe(ctx, "127.0.0.1:notaport", Options{}); err == nil {
			t.Error("ListenAndServe accepted a bad address")
		}
	})
}

func TestParseHeaderArg(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg     string
		want    [2]string
		wantErr bool
	}{
		{arg: "x-a:1", want: [2]string{"x-a", "1"}},
		{arg: " x-a : some value ", want: [2]string{"x-a", "some value"}},
		{arg: "x-url:http://h:1/p", want: [2]string{"x-url", "http://h:1/p"}},
		{arg: "x-empty:", want: [2]string{"x-empty", ""}},
		{arg: "novalue", wantErr: true},
		{arg: ":v", wantErr: true},
		{arg: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseHeaderArg(tt.arg)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseHeaderArg(%q) error %v, wantErr %v", tt.arg, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseHeaderArg(%q) = %q, want %q", tt.arg, got, tt.want)
		}
	}
}
