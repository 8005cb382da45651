package sampleproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Register adds the processor and a gRPC health service to s. Health is registered
// alongside because gateways (and Kubernetes probes) check it before sending traffic; it
// reports SERVING both for the whole server ("") and for the ExternalProcessor service.
func Register(s *grpc.Server, p *Server) {
	extprocv3.RegisterExternalProcessorServer(s, p)
	healthpb.RegisterHealthServer(s, p.health)
	p.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	p.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// Serve runs the sample processor on lis until ctx is cancelled, then stops gracefully:
// health turns NOT_SERVING, open streams get Options.ShutdownGrace to finish and are then
// cut. It takes a listener (rather than an address) so that callers such as tests and
// `sluice demo` can bind port 0 and learn the address before serving. It closes lis and
// returns nil after a shutdown requested through ctx.
func Serve(ctx context.Context, lis net.Listener, opts Options) error {
	p := New(opts)
	gs := grpc.NewServer()
	Register(gs, p)
	p.log.Info("ext_proc sample processor listening", "addr", lis.Addr().String())

	serveDone := make(chan struct{})
	stopDone := make(chan struct{})
	go func() {
		defer close(stopDone)
		select {
		case <-serveDone:
			// Serve failed on its own; make sure nothing it started lingers.
			gs.Stop()
			return
		case <-ctx.Done():
		}
		p.log.Info("ext_proc sample processor stopping", "grace", p.grace)
		p.health.Shutdown()
		stopGracefully(gs, p.grace)
	}()

	err := gs.Serve(lis)
	close(serveDone)
	<-stopDone
	if errors.Is(err, grpc.ErrServerStopped) && ctx.Err() != nil {
		// ctx was cancelled before Serve got going; that is still a requested stop.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("serving ext_proc on %s: %w", lis.Addr(), err)
	}
	p.log.Info("ext_proc sample processor stopped")
	return nil
}

// ListenAndServe listens on addr (host:port, TCP) and calls Serve. Plaintext is the point:
// the documented setup has gateways talk h2c to the processor.
func ListenAndServe(ctx context.Context, addr string, opts Options) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for ext_proc on %s: %w", addr, err)
	}
	return Serve(ctx, lis, opts)
}

// stopGracefully drains gs but gives up after grace, because GracefulStop alone waits for
// every stream and an ext_proc stream lives as long as the HTTP request it serves.
func stopGracefully(gs *grpc.Server, grace time.Duration) {
	drained := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(drained)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		gs.Stop()
		<-drained
	}
}

// ParseHeaderArg parses a "name:value" command-line argument into a header pair for
// Options.AddHeaders. Only the first colon separates, so values may contain colons (URLs,
// times); surrounding spaces are trimmed as a user would expect from curl's -H.
func ParseHeaderArg(arg string) ([2]string, error) {
	name, value, ok := strings.Cut(arg, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return [2]string{}, fmt.Errorf("header %q: want name:value", arg)
	}
	return [2]string{name, strings.TrimSpace(value)}, nil
}
