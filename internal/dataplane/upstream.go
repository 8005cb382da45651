package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/internal/backendtls"
	"github.com/sluice-gateway/sluice/internal/h1client"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// Upstreams holds the connection pools to backends. It lives outside configuration
// snapshots so that a reload keeps every pooled connection: pools are keyed by protocol and
// TLS identity, and each http.Transport pools per endpoint address.
type Upstreams struct {
	dialTimeout time.Duration

	// h1 serves plain HTTP/1.1 backends: the hot path, see docs/design.md.
	h1 *h1client.Client
	// base is the template of the net/http transports (h2c, TLS).
	base *http.Transport
	h2c  *http.Transport

	mu  sync.Mutex
	tls map[string]*http.Transport // by TLS identity
}

// UpstreamOptions tune the upstream connection pools.
type UpstreamOptions struct {
	// DialTimeout bounds a TCP (and TLS) connect. Default 5s.
	DialTimeout time.Duration
	// MaxIdlePerEndpoint is the number of idle keep-alive connections kept per endpoint.
	// Default 1024, so that a busy gateway does not churn connections.
	MaxIdlePerEndpoint int
	// IdleTimeout closes pooled connections unused for this long. Default 90s.
	IdleTimeout time.Duration
}

// NewUpstreams returns empty pools.
func NewUpstreams(o UpstreamOptions) *Upstreams {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxIdlePerEndpoint <= 0 {
		o.MaxIdlePerEndpoint = 1024
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	u := &Upstreams{dialTimeout: o.DialTimeout, tls: make(map[string]*http.Transport)}
	u.base = u.newTransport(o)
	u.h1 = h1client.New(h1client.Options{
		Dial:           u.base.DialContext,
		MaxIdlePerHost: o.MaxIdlePerEndpoint,
		IdleTimeout:    o.IdleTimeout,
	})
	u.h2c = u.newTransport(o)
	u.h2c.Protocols = new(http.Protocols)
	u.h2c.Protocols.SetUnencryptedHTTP2(true)
	return u
}

func (u *Upstreams) newTransport(o UpstreamOptions) *http.Transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err: err}
			}
			return c, nil
		},
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: o.MaxIdlePerEndpoint,
		IdleConnTimeout:     o.IdleTimeout,
		TLSHandshakeTimeout: o.DialTimeout,
		// The gateway forwards bodies as they are: compression is the client's business.
		DisableCompression: true,
		// 1xx responses are forwarded through httptrace; the default limit is fine.
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// roundTripper sends one request upstream; each pool is one.
type roundTripper interface {
	RoundTrip(*http.Request) (*http.Response, error)
}

// transport returns the pool for a backend.
func (u *Upstreams) transport(b *ir.Backend) (roundTripper, error) {
	switch b.Protocol {
	case ir.UpstreamH2C:
		return u.h2c, nil
	case ir.UpstreamHTTPS:
		return u.tlsTransport(b.TLS)
	default:
		return u.h1, nil
	}
}

func (u *Upstreams) tlsTransport(t *ir.BackendTLS) (*http.Transport, error) {
	if t == nil {
		t = &ir.BackendTLS{}
	}
	key := backendtls.Key(t)
	u.mu.Lock()
	defer u.mu.Unlock()
	if tr, ok := u.tls[key]; ok {
		return tr, nil
	}
	cfg, err := backendtls.Config(t)
	if err != nil {
		return nil, err
	}
	tr := u.base.Clone()
	tr.Protocols = nil
	tr.ForceAttemptHTTP2 = true
	tr.TLSClientConfig = cfg
	u.tls[key] = tr
	return tr, nil
}

// Close drops idle pooled connections.
func (u *Upstreams) Close() {
	u.h1.CloseIdleConnections()
	u.h2c.CloseIdleConnections()
	u.mu.Lock()
	for _, t := range u.tls {
		t.CloseIdleConnections()
	}
	u.mu.Unlock()
}

// dialError marks a failure to connect, which answers 503 rather than 502.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// balancer picks endpoints of one backend round-robin.
type balancer struct {
	backend *ir.Backend
	addrs   []string
	next    atomic.Uint32
	tr      roundTripper
	// h1 is tr when it is the lean HTTP/1.1 client, which is called without a trace.
	h1     *h1client.Client
	scheme string
	// budget bounds the retries of routes that retry to this backend.
	budget retryBudget
	// health is what is known of each endpoint (see eject.go); anyEjected is set once
	// one was ever ejected, so that healthy backends pay for none of it.
	health     []endpointHealth
	anyEjected atomic.Bool
}

func newBalancer(b *ir.Backend, u *Upstreams) (*balancer, error) {
	tr, err := u.transport(b)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", b.Name, err)
	}
	bl := &balancer{backend: b, tr: tr, scheme: "http"}
	bl.h1, _ = tr.(*h1client.Client)
	if b.Protocol == ir.UpstreamHTTPS {
		bl.scheme = "https"
	}
	for _, e := range b.Endpoints {
		bl.addrs = append(bl.addrs, net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port))))
	}
	bl.health = make([]endpointHealth, len(bl.addrs))
	return bl, nil
}

// pick returns the next endpoint address not ejected, or "" when the backend has none.
func (b *balancer) pick() string {
	if i := b.pickIndex(); i >= 0 {
		return b.addrs[i]
	}
	return ""
}
