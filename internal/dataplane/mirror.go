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
// A request body is kept as it streams to the route's backend, as for retries (see
// replayBody), and the copies leave once it is whole. A body that outgrows maxReplayBody,
// or that the backend never reads to its end, is not mirrored at all (outcome
// "body_not_replayable"): its headers alone would announce a body the copy does not
// carry. Upgrades (WebSocket) are not mirrored either: a copy cannot take part in the
// client's conversation.

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

// mirror sends copies of out to the route's mirrors its sampling selects. Without a
// body they go at once; with one (rb, nil when it is known to be too large), once the
// route's backend has read it to its end, so that the original request never waits
// for its copies.
func (g *Gateway) mirror(ex *exchange, rt *route, out *http.Request, rb *replayBody) {
	var picked []*mirror
	for i := range rt.mirrors {
		if m := &rt.mirrors[i]; m.sampled() {
			picked = append(picked, m)
		}
	}
	if len(picked) == 0 || upgradeType(out.Header) != "" {
		return
	}
	// Cloned now: the backendRef's filters and the transport change out's header while
	// the copies wait for the body.
	req := out.Clone(g.mirrors.ctx)
	req.Host = shadowHost(out.Host)
	req.Trailer = nil
	req.Body, req.GetBody = nil, nil
	hasBody := out.Body != nil && out.Body != http.NoBody
	send := func(body []byte, ok bool) {
		for _, m := range picked {
			if !ok {
				g.metrics.mirrored(ex.Route, m.bal.backend.Name, mirrorNotReplayable)
				continue
			}
			g.sendMirror(ex.Route, m, req, hasBody, body)
		}
	}
	switch {
	case !hasBody:
		send(nil, true)
	case rb == nil:
		send(nil, false)
	default:
		rb.onDone(send)
	}
}

// sendMirror starts one copy of req, with body when the original had one, unless the
// mirror has no endpoint or the pool is full.
func (g *Gateway) sendMirror(route string, m *mirror, req *http.Request, hasBody bool, body []byte) {
	name := m.bal.backend.Name
	addr := m.bal.pick()
	if addr == "" {
		g.metrics.mirrored(route, name, mirrorNoEndpoint)
		return
	}
	if !g.mirrors.acquire() {
		g.metrics.mirrored(route, name, mirrorDropped)
		return
	}
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host = m.bal.scheme, addr
	if hasBody {
		// The copy's length is known now, whatever the original's framing was.
		r.ContentLength, r.TransferEncoding = int64(len(body)), nil
		r.Body, r.GetBody = http.NoBody, nil
		if len(body) > 0 {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
	}
	go g.runMirror(route, m, r)
}

// runMirror sends one copy and discards its response; it owns a slot of the pool.
func (g *Gateway) runMirror(route string, m *mirror, req *http.Request) {
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
