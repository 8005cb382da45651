// Package extproc is Sluice's external processing filter: for each request it opens one
// envoy.service.ext_proc.v3.ExternalProcessor/Process stream to the configured processor
// and lets the processor read and change the request and the response, as Envoy's
// ext_proc filter does (see /work/shared/extproc/SPEC.md).
package extproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/sluice-gateway/sluice/internal/backendtls"
	"github.com/sluice-gateway/sluice/internal/extproc/settings"
	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// PoolOptions configure a Pool. The zero value is usable.
type PoolOptions struct {
	// Logger receives debug logs of every message (header values redacted) and warnings.
	// Default slog.Default().
	Logger *slog.Logger
	// Metrics, when not nil, records per-processor metrics.
	Metrics *Metrics
	// MaxRecvMsgSize bounds a processor's answer; a larger one fails the request.
	// Default 4 MiB, as gRPC's.
	MaxRecvMsgSize int
	// RedactHeaders are header names (any case) whose values debug logs replace with
	// "[redacted]". Default authorization, cookie, set-cookie, proxy-authorization.
	RedactHeaders []string
	// DeferredCloseTimeout is how long an observability-mode stream stays open after the
	// exchange for the processor to finish reading. Default 5s.
	DeferredCloseTimeout time.Duration
	// CloseGrace is how long Done waits, after the last answer, for the processor's own
	// end of the stream before resetting it. Default 20ms.
	CloseGrace time.Duration
	// IdleTimeout fails a full-duplex body whose processor sends nothing for this long
	// (504), standing in for the per-message timer that mode does not arm. Default 5m,
	// Envoy's stream idle timeout.
	IdleTimeout time.Duration
	// DialOptions are added to every processor connection (tests, interceptors).
	DialOptions []grpc.DialOption
}

// Pool keeps one gRPC connection per processor (address set and TLS identity) for the
// life of the gateway, so that reloads reuse them, and builds filter factories on them.
// It is safe for concurrent use.
type Pool struct {
	opts   PoolOptions
	log    *slog.Logger
	redact map[string]bool

	// ctx outlives requests: observability streams, which finish after their request,
	// hang off it, and Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// bg counts the goroutines of observability and full-duplex streams.
	bg sync.WaitGroup

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

var resolverSeq atomic.Uint64

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxRecvMsgSize <= 0 {
		opts.MaxRecvMsgSize = 4 << 20
	}
	if opts.RedactHeaders == nil {
		opts.RedactHeaders = []string{"authorization", "cookie", "set-cookie", "proxy-authorization"}
	}
	if opts.DeferredCloseTimeout <= 0 {
		opts.DeferredCloseTimeout = 5 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	if opts.CloseGrace <= 0 {
		opts.CloseGrace = 20 * time.Millisecond
	}
	p := &Pool{opts: opts, log: opts.Logger, conns: make(map[string]*grpc.ClientConn),
		redact: make(map[string]bool, len(opts.RedactHeaders))}
	for _, h := range opts.RedactHeaders {
		p.redact[strings.ToLower(h)] = true
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// Build makes the filter factory of one processor for a configuration snapshot. The
// connection is shared with every earlier and later Build for the same processor address.
func (p *Pool) Build(x *ir.ExtProc) (filter.Factory, error) {
	if x == nil || x.Spec == nil {
		return nil, errors.New("ext_proc: no spec")
	}
	set, err := settings.Compile(x.Spec)
	if err != nil {
		return nil, fmt.Errorf("ext_proc %s: %w", x.Policy, err)
	}
	return p.build(x, set)
}

func (p *Pool) build(x *ir.ExtProc, set *settings.Settings) (filter.Factory, error) {
	if set.Disabled {
		return disabledFactory{}, nil
	}
	conn, err := p.conn(x.Backend)
	if err != nil {
		return nil, fmt.Errorf("ext_proc %s: %w", x.Policy, err)
	}
	f := &factory{
		pool:   p,
		name:   x.Policy,
		set:    set,
		client: extprocv3.NewExternalProcessorClient(conn),
		m:      p.opts.Metrics.forProcessor(x.Policy),
		log:    p.log.With("processor", x.Policy),
	}
	if len(set.InitialMetadata) > 0 {
		f.md = metadata.New(set.InitialMetadata)
	}
	return f, nil
}

// Close closes every connection and ends the streams still deferred (observability mode),
// waiting for their goroutines.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*grpc.ClientConn{}
	p.mu.Unlock()
	p.cancel()
	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.bg.Wait()
	return errors.Join(errs...)
}

// conn returns the shared connection for backend b, dialing it (lazily: grpc.NewClient
// does not connect until the first stream) on first use.
func (p *Pool) conn(b *ir.Backend) (*grpc.ClientConn, error) {
	if b == nil || len(b.Endpoints) == 0 {
		return nil, errors.New("processor backend has no endpoints")
	}
	key := connKey(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("pool closed")
	}
	if c := p.conns[key]; c != nil {
		return c, nil
	}
	var creds credentials.TransportCredentials
	if b.Protocol == ir.UpstreamHTTPS {
		cfg, err := tlsConfig(b.TLS)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	} else {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// chunkCodec: body chunks in buffers of their own size, not gRPC's 1 MiB class
		// (see codec.go).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.opts.MaxRecvMsgSize), codecOption()),
		// Fixed receive windows instead of gRPC's dynamic (BDP) ones, which grow each
		// stream's window up to 16 MiB: answers that the request's reader has not taken
		// yet (a full-duplex body whose upstream is slower than the processor) wait in
		// that window, so it is the memory of a body in flight. streamWindow keeps that
		// to a few chunks. The connection window only bounds bytes on the wire (gRPC
		// returns it as data arrives, not as streams read it), so it is large enough
		// for many streams at once.
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
	target := net.JoinHostPort(b.Endpoints[0].Host, strconv.Itoa(int(b.Endpoints[0].Port)))
	if len(b.Endpoints) > 1 {
		// Several endpoints: a manual resolver hands them all to round_robin.
		r := manual.NewBuilderWithScheme("sluice-extproc-" + strconv.FormatUint(resolverSeq.Add(1), 10))
		addrs := make([]resolver.Address, 0, len(b.Endpoints))
		for _, e := range b.Endpoints {
			addrs = append(addrs, resolver.Address{Addr: net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))})
		}
		r.InitialState(resolver.State{Addresses: addrs})
		opts = append(opts, grpc.WithResolvers(r),
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
		target = r.Scheme() + ":///" + b.Name
	} else if ip := net.ParseIP(b.Endpoints[0].Host); ip != nil {
		target = "passthrough:///" + target
	}
	if b.TLS != nil && b.TLS.SNI != "" {
		opts = append(opts, grpc.WithAuthority(b.TLS.SNI))
	}
	opts = append(opts, p.opts.DialOptions...)
	c, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("processor connection to %s: %w", target, err)
	}
	p.conns[key] = c
	return c, nil
}

func connKey(b *ir.Backend) string {
	eps := make([]string, 0, len(b.Endpoints))
	for _, e := range b.Endpoints {
		eps = append(eps, net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port))))
	}
	slices.Sort(eps)
	key := string(b.Protocol) + "|" + strings.Join(eps, ",")
	if b.Protocol == ir.UpstreamHTTPS {
		key += "|" + backendtls.Key(b.TLS)
	}
	return key
}

// tlsConfig is the client TLS configuration towards a processor: the backend's, with
// gRPC's ALPN protocol.
func tlsConfig(t *ir.BackendTLS) (*tls.Config, error) {
	cfg, err := backendtls.Config(t)
	if err != nil {
		return nil, fmt.Errorf("processor %w", err)
	}
	cfg.NextProtos = []string{"h2"}
	return cfg, nil
}

// factory is one processor of one configuration snapshot.
type factory struct {
	pool   *Pool
	name   string
	set    *settings.Settings
	client extprocv3.ExternalProcessorClient
	md     metadata.MD
	m      *procMetrics
	log    *slog.Logger
}

func (f *factory) Start(ex *filter.Exchange) filter.Instance {
	return &instance{f: f, ex: ex, mode: f.set.Mode}
}

type disabledFactory struct{}

func (disabledFactory) Start(*filter.Exchange) filter.Instance { return nopInstance{} }

type nopInstance struct{}

func (nopInstance) Request(context.Context, *filter.Exchange) *filter.LocalReply { return nil }
func (nopInstance) Response(context.Context, *filter.Exchange, *http.Response) *filter.LocalReply {
	return nil
}
func (nopInstance) Done(error) {}
