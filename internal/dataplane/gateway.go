// Package dataplane serves HTTP: listeners, routing, the proxy to upstreams and the filter
// chain, all driven by an immutable Snapshot swapped atomically on each new configuration.
package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/internal/h1server"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// Options configure a Gateway. Zero values take the documented defaults.
type Options struct {
	// BindAddress is the address listeners bind on. Default 0.0.0.0.
	BindAddress string
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
	// AccessLog receives one line per request; nil disables the access log.
	AccessLog *slog.Logger
	// Metrics records per-route metrics; nil disables them.
	Metrics *Metrics
	// Upstreams are the connection pools to backends. Default: new pools.
	Upstreams *Upstreams
	// BuildFilter turns attached processors into filters. nil: processors are ignored.
	BuildFilter FilterBuilder
	// Limits protect the listeners.
	Limits Limits
	// HTTP1Server chooses the server of plain-HTTP ports: HTTP1Lean (internal/h1server,
	// the default: it refuses ambiguous framing itself and hands prior-knowledge h2c
	// connections to net/http) or HTTP1NetHTTP (net/http's, with the framing scanner of
	// h1guard.go). HTTPS ports always use net/http. Empty takes $SLUICE_HTTP1_SERVER, so
	// that test suites and benchmarks can run whole with either server, else the default.
	HTTP1Server string
}

// The servers HTTP1Server names.
const (
	HTTP1NetHTTP = "net/http"
	HTTP1Lean    = "lean"
)

// ValidHTTP1Server reports whether name is a server HTTP1Server accepts ("" included).
func ValidHTTP1Server(name string) bool {
	return name == "" || name == HTTP1NetHTTP || name == HTTP1Lean
}

// Limits are the server-side protections of every listener.
type Limits struct {
	// MaxHeaderBytes bounds the request line and headers; larger requests get 431.
	// Default 60 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the wait for a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout time.Duration
	// MaxConcurrentStreams bounds concurrent HTTP/2 streams per connection. Default 100.
	MaxConcurrentStreams int
}

func (l *Limits) defaults() {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 60 << 10
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 60 * time.Second
	}
	if l.MaxConcurrentStreams <= 0 {
		l.MaxConcurrentStreams = 100
	}
}

// Gateway serves the listeners of the current configuration.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	snap    atomic.Pointer[Snapshot]
	mirrors *mirrorPool

	mu      sync.Mutex
	servers map[ir.PortKey]*server
	// draining are the servers of ports removed by a reload, until their drain ends;
	// Shutdown waits for them too.
	draining map[*server]struct{}
	closed   bool
}

type server struct {
	port     ir.PortKey
	protocol ir.Protocol
	srv      httpServer
	ln       net.Listener
	done     chan struct{}
}

// httpServer is what the gateway needs of a server: net/http's or the lean HTTP/1.1 one.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// New returns a gateway that serves nothing until Apply.
func New(o Options) *Gateway {
	if o.BindAddress == "" {
		o.BindAddress = "0.0.0.0"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Upstreams == nil {
		o.Upstreams = NewUpstreams(UpstreamOptions{})
	}
	o.Limits.defaults()
	if o.HTTP1Server == "" {
		o.HTTP1Server = os.Getenv("SLUICE_HTTP1_SERVER")
	}
	if o.HTTP1Server != HTTP1NetHTTP {
		// Every test of dataplane, e2e, app and cmd/sluice (and of the whole module)
		// passes with either server, with -race; the lean one costs less per request.
		o.HTTP1Server = HTTP1Lean
	}
	return &Gateway{opts: o, log: o.Logger, metrics: o.Metrics, mirrors: newMirrorPool(),
		servers: make(map[ir.PortKey]*server), draining: make(map[*server]struct{})}
}

// Snapshot returns the snapshot being served, nil before the first Apply.
func (g *Gateway) Snapshot() *Snapshot { return g.snap.Load() }

// Apply compiles cfg and serves it: new ports are bound first (a port that cannot be bound
// fails the whole change and the old configuration keeps serving), then the snapshot is
// swapped, then ports no longer configured are drained in the background.
func (g *Gateway) Apply(cfg *ir.Config, extra any) error {
	snap, err := Compile(cfg, g.opts.Upstreams, g.opts.BuildFilter)
	if err != nil {
		return fmt.Errorf("compiling the configuration: %w", err)
	}
	snap.Extra = extra
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("gateway is shut down")
	}
	want := make(map[ir.PortKey]ir.Protocol, len(cfg.Ports))
	for _, p := range cfg.Ports {
		want[p.Key()] = p.Protocol
	}
	var started []*server
	for _, p := range cfg.Ports {
		k := p.Key()
		if s, ok := g.servers[k]; ok {
			if s.protocol == p.Protocol {
				continue
			}
			// A protocol change needs a new socket on the same port: free it first.
			s.srv.Close()
			<-s.done
			delete(g.servers, k)
		}
		s, err := g.listen(k, p.Protocol)
		if err != nil {
			for _, s := range started {
				// Serve never ran, so the server does not own the listener yet.
				s.ln.Close()
				delete(g.servers, s.port)
			}
			return err
		}
		started = append(started, s)
		g.servers[k] = s
	}
	g.snap.Store(snap)
	for _, s := range started {
		go s.serve(g)
	}
	for port, s := range g.servers {
		if _, ok := want[port]; !ok {
			delete(g.servers, port)
			g.draining[s] = struct{}{}
			go g.drain(s, g.opts.Limits.IdleTimeout)
		}
	}
	return nil
}

func (g *Gateway) listen(port ir.PortKey, proto ir.Protocol) (*server, error) {
	host := port.Address
	if host == "" {
		host = g.opts.BindAddress
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(port.Number))))
	if err != nil {
		return nil, fmt.Errorf("listener port %s: %w", port, err)
	}
	scheme := "http"
	if proto == ir.ProtocolHTTPS {
		scheme = "https"
	}
	lim := g.opts.Limits
	srv := &http.Server{
		Handler:           &portHandler{gw: g, port: port, scheme: scheme},
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: lim.MaxConcurrentStreams},
		Protocols:         new(http.Protocols),
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnContext:       connContext,
		// net/http would answer "OPTIONS *" without calling the handler, and the handler
		// must see every request of a connection to match the scanner's count.
		DisableGeneralOptionsHandler: true,
	}
	srv.Protocols.SetHTTP1(true)
	if proto == ir.ProtocolHTTPS {
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			// Listed here, not left to net/http, because the listener does the handshake
			// (see tlsGuardListener) and Serve only sets up HTTP/2 when "h2" is listed.
			NextProtos: []string{"h2", "http/1.1"},
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if e := g.tlsEntry(port, hello.ServerName); e != nil {
					return e.cert, nil
				}
				return nil, fmt.Errorf("no certificate for %q on port %s", hello.ServerName, port)
			},
		}
		base := srv.TLSConfig
		// The listener chosen by SNI, like its certificate, says whether to ask for a
		// client certificate; nil keeps base (no client certificate).
		base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if e := g.tlsEntry(port, hello.ServerName); e != nil && e.client != nil {
				return e.client.serverConfig(base), nil
			}
			return nil, nil
		}
		ln = newTLSGuardListener(ln, srv.TLSConfig.Clone(), lim.ReadHeaderTimeout, g.log)
	} else if g.opts.HTTP1Server == HTTP1Lean {
		// The lean server refuses Content-Length with Transfer-Encoding and obsolete
		// folding itself, before any handler: no scanner, and framingViolationOf finds
		// no guarded connection. net/http serves the h2c connections it hands over.
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetUnencryptedHTTP2(true)
		lean := &h1server.Server{
			Handler:           srv.Handler,
			ReadHeaderTimeout: lim.ReadHeaderTimeout,
			IdleTimeout:       lim.IdleTimeout,
			MaxHeaderBytes:    lim.MaxHeaderBytes,
			ConnContext:       connContext,
			H2C:               srv,
			ErrorLog:          srv.ErrorLog,
			OnRefuse:          g.refused,
		}
		return &server{port: port, protocol: proto, srv: lean, ln: ln, done: make(chan struct{})}, nil
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
		ln = guardListener{ln}
	}
	return &server{port: port, protocol: proto, srv: srv, ln: ln, done: make(chan struct{})}, nil
}

// tlsEntry returns the certificate and client validation for server name sni on port,
// from the current snapshot; nil when none serves it.
func (g *Gateway) tlsEntry(port ir.PortKey, sni string) *tlsEntry {
	if s := g.snap.Load(); s != nil {
		if ct := s.certs[port]; ct != nil {
			return ct.get(sni)
		}
	}
	return nil
}

func (s *server) serve(g *Gateway) {
	defer close(s.done)
	// HTTPS listeners complete the handshake themselves (tlsGuardListener).
	err := s.srv.Serve(s.ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.log.Error("listener stopped", "port", s.port, "error", err)
	}
}

func (g *Gateway) drain(s *server, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
	g.mu.Lock()
	delete(g.draining, s)
	g.mu.Unlock()
}

// Shutdown stops accepting connections and waits for requests in flight to finish, until
// ctx is done; then it closes what remains.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	servers := make([]*server, 0, len(g.servers)+len(g.draining))
	for _, s := range g.servers {
		servers = append(servers, s)
	}
	for s := range g.draining {
		servers = append(servers, s)
	}
	g.servers = map[ir.PortKey]*server{}
	g.mu.Unlock()
	var errs []error
	for _, s := range servers {
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("port %s: %w", s.port, err))
			s.srv.Close()
		}
		<-s.done
	}
	// Mirrored requests are fire-and-forget: not waited for like the client's, cut short.
	g.mirrors.close()
	g.opts.Upstreams.Close()
	return errors.Join(errs...)
}

// Addrs returns the bound address of each listening port number. When one port number
// is bound on several addresses (Gateways with addresses of their own), the socket on
// the default bind address is returned, else the one on the lowest address.
func (g *Gateway) Addrs() map[int32]net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[int32]net.Addr, len(g.servers))
	chosen := make(map[int32]string, len(g.servers))
	for k, s := range g.servers {
		if prev, ok := chosen[k.Number]; ok && (prev == "" || (k.Address != "" && k.Address > prev)) {
			continue
		}
		out[k.Number] = s.ln.Addr()
		chosen[k.Number] = k.Address
	}
	return out
}

// Sockets returns the bound address of every listening socket.
func (g *Gateway) Sockets() []net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]net.Addr, 0, len(g.servers))
	for _, s := range g.servers {
		out = append(out, s.ln.Addr())
	}
	return out
}
