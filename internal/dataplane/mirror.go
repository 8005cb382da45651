package dataplane

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Mirroring follows Envoy's request mirroring: a fire-and-forget copy of a request, as
// the route's request filters left it, goes to each mirror backend its share selects; the
// copy's Host gets the suffix "-shadow" (before the port), so that the mirror can tell
// copies from real traffic. The mirror's response is discarded: it never delays or
// changes the client's answer.
//
// A request body is copied only when it can be replayed from memory, as for retries: its
// length announced and at most maxReplayBody, read whole before the request is sent. A
// request with any other body is not mirrored at all (outcome "body_not_replayable"):
// its headers alone would announce a body the copy does not carry, and buffering large
// or streamed bodies would cost every request of the route. Upgrades (WebSocket) are not
// mirrored either: a copy cannot take part in the client's conversation.

const (
	// maxMirrorsInFlight bounds the mirrored requests a gateway has in flight: beyond,
	// copies are dropped (outcome "dropped"), so that a slow mirror cannot pile up
	// goroutines and connections.
	maxMirrorsInFlight = 256
	// mirrorTimeout bounds one mirrored request, response body included.
	mirrorTimeout = 10 * time.Second
	// maxMirrorDrain is the most of a mirror's response body read, so that its
	// connection serves again; a longer one closes its connection instead.
	maxMirrorDrain = 1 << 20
	// shadowSuffix is appended to the host of a mirrored request, as Envoy does.
	shadowSuffix = "-shadow"
)

// The outcomes of sluice_mirror_requests_total.
const (
	mirrorOK            = "ok"
	mirrorFailed        = "failed"
	mirrorDropped       = "dropped"
	mirrorNoEndpoint    = "no_healthy_upstream"
	mirrorNotReplayable = "body_not_replayable"
)

// mirror is a compiled ir.Mirror.
type mirror struct {
	bal      *balancer
	num, den int32
}

// sampled draws whether this request is copied to m.
func (m *mirror) sampled() bool {
	return m.num >= m.den || rand.Int32N(m.den) < m.num
}

// mirrorPool runs the mirrored requests of a gateway: at most maxMirrorsInFlight at once,
// all cancelled and waited for by close.
type mirrorPool struct {
	slots  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func newMirrorPool() *mirrorPool {
	ctx, cancel := context.WithCancel(context.Background())
	return &mirrorPool{slots: make(chan struct{}, maxMirrorsInFlight), ctx: ctx, cancel: cancel}
}

// acquire takes a slot for one mirrored request; false when the pool is full or closed.
func (p *mirrorPool) acquire() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	select {
	case p.slots <- struct{}{}:
		p.wg.Add(1)
		return true
	default:
		return false
	}
}

func (p *mirrorPool) release() {
	<-p.slots
	p.wg.Done()
}

// close cancels the mirrored requests in flight and waits for them to end.
func (p *mirrorPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// mirror sends copies of out to the route's mirrors its sampling selects. It returns the
// request to send to the route's backends: out, or out with its body read into memory so
// that it can be sent more than once. err is a failure to read that body.
func (g *Gateway) mirror(ex *exchange, rt *route, out *http.Request) (*http.Request, error) {
	var picked []*mirror
	for i := range rt.mirrors {
		if m := &rt.mirrors[i]; m.sampled() {
			picked = append(picked, m)
		}
	}
	if len(picked) == 0 {
		return out, nil
	}
	if upgradeType(out.Header) != "" {
		return out, nil
	}
	var body []byte
	if out.Body != nil && out.Body != http.NoBody {
		if out.ContentLength < 0 || out.ContentLength > maxReplayBody {
			for _, m := range picked {
				g.metrics.mirrored(ex.Route, m.bal.backend.Name, mirrorNotReplayable)
			}
			return out, nil
		}
		body = make([]byte, out.ContentLength)
		if _, err := io.ReadFull(out.Body, body); err != nil {
			return out, err
		}
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	for _, m := range picked {
		name := m.bal.backend.Name
		addr := m.bal.pick()
		if addr == "" {
			g.metrics.mirrored(ex.Route, name, mirrorNoEndpoint)
			continue
		}
		if !g.mirrors.acquire() {
			g.metrics.mirrored(ex.Route, name, mirrorDropped)
			continue
		}
		// Cloned now: the main request's header map is changed further (the backendRef's
		// filters, the transport) while the copy is sent.
		req := out.Clone(g.mirrors.ctx)
		req.URL.Scheme, req.URL.Host = m.bal.scheme, addr
		req.Host = shadowHost(out.Host)
		req.Trailer = nil
		req.Body, req.GetBody = nil, nil
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.GetBody = out.GetBody
		}
		go g.sendMirror(ex.Route, m, req)
	}
	return out, nil
}

// sendMirror sends one copy and discards its response; it owns a slot of the pool.
func (g *Gateway) sendMirror(route string, m *mirror, req *http.Request) {
	defer g.mirrors.release()
	ctx, cancel := context.WithTimeout(req.Context(), mirrorTimeout)
	defer cancel()
	req = req.WithContext(ctx)
	var resp *http.Response
	var err error
	if m.bal.h1 != nil {
		resp, err = m.bal.h1.Do(req, nil)
	} else {
		resp, err = m.bal.tr.RoundTrip(req)
	}
	outcome := mirrorOK
	if err != nil {
		outcome = mirrorFailed
	} else {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMirrorDrain))
		resp.Body.Close()
		if err != nil {
			outcome = mirrorFailed
		}
	}
	g.metrics.mirrored(route, m.bal.backend.Name, outcome)
}

// shadowHost is host with the shadow suffix after its name, before its port if any.
func shadowHost(host string) string {
	if h, port, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h+shadowSuffix, port)
	}
	return host + shadowSuffix
}
