package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// errRequestTimeout is the cancellation cause when a route's timeout fires.
var errRequestTimeout = errors.New("route timeout")

// portHandler serves the requests of one listening port from the current snapshot.
type portHandler struct {
	gw     *Gateway
	port   ir.PortKey
	scheme string
}

// exchange is the data plane's per-request state.
type exchange struct {
	filter.Exchange
	rw  http.ResponseWriter
	in  *http.Request
	ctx context.Context
	// cancel ends ctx; the cause says why (errRequestTimeout for route timeouts).
	cancel context.CancelCauseFunc
	// pending is the reply a filter made in its request phase.
	pending *filter.LocalReply

	route   *route
	status  int
	written int64
	details string
	// origin is the request's Origin as the route's CORS filter saw it, before the
	// route's header filters: the responses get the CORS headers for it.
	origin string
	// responders are the filters whose Request completed: they see the response, last first.
	responders    []filter.Instance
	instances     []filter.Instance
	upstreamStart time.Time
	upstreamDur   time.Duration
	// aborted is why the response was cut short after its headers went out.
	aborted error
	// metrics caches the metric children of the route and backend chosen.
	metrics *metricsSlot
	// retries is the number of tries sent again by the route's retry policy.
	retries int
	// grpcStatus is the grpc-status of a gRPC call's response, for the access log.
	grpcStatus string
}

func (h *portHandler) ServeHTTP(rw http.ResponseWriter, in *http.Request) {
	snap := h.gw.snap.Load()
	ex := &exchange{rw: rw, in: in}
	ex.Start = time.Now()
	ex.Scheme = h.scheme
	ex.TLS = in.TLS
	ex.ClientAddr, _ = netip.ParseAddrPort(in.RemoteAddr)
	if la, ok := in.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ta, ok := la.(*net.TCPAddr); ok {
			ex.LocalAddr = ta.AddrPort()
		}
	}
	// The request's own context serves until a route timeout needs a cancellable one
	// (serveRoute): net/http cancels it when the handler returns, as a derived context
	// would be, and sparing one context per request saves its allocations and its
	// registration with the parent.
	ex.ctx = in.Context()

	var err error
	defer func() {
		if p := recover(); p != nil {
			// A response cut short (http.ErrAbortHandler) still ends the exchange, and
			// its filters must hear that it failed; net/http then resets the client.
			err = ex.aborted
			if err == nil {
				err = fmt.Errorf("handler panic: %v", p)
			}
			h.gw.finish(ex, err)
			panic(p)
		}
		h.gw.finish(ex, err)
	}()

	out := newOutRequest(ex, in)
	normalizePath(out.URL)
	ex.Request = out
	// Before anything else sees the request: refused framing is the connection's last
	// request, whatever a route or a processor would make of it.
	if v := framingViolationOf(in); v != violationNone {
		err = h.gw.refuseFraming(ex, v)
		return
	}
	if in.Method == http.MethodOptions && in.RequestURI == "*" {
		// What net/http answers itself when DisableGeneralOptionsHandler is off.
		ex.status = http.StatusOK
		rw.Header().Set("Content-Length", "0")
		if in.ContentLength != 0 {
			_, _ = io.Copy(io.Discard, http.MaxBytesReader(rw, in.Body, 4<<10))
		}
		return
	}
	if upgradeType(in.Header) == "" && in.ProtoMajor == 1 {
		// Upload and download may overlap (streaming RPCs over HTTP/1.1, long uploads
		// answered early): without full duplex the server would close the request body
		// once the response starts.
		_ = http.NewResponseController(rw).EnableFullDuplex()
	}

	var pt *portTable
	if snap != nil {
		pt = snap.ports[h.port]
	}
	if pt == nil {
		err = h.gw.localReply(ex, filter.Reply(http.StatusNotFound, "no_listener", "no listener serves this port\n"))
		return
	}
	var hb hostBuf
	lt := pt.selectListener(hb.normalize(out.Host))
	if lt == nil {
		err = h.gw.localReply(ex, filter.Reply(http.StatusNotFound, "no_listener", "no listener matches this host\n"))
		return
	}
	if in.TLS != nil && in.TLS.ServerName != "" && len(pt.listeners) > 1 {
		// The TLS handshake chose a listener (and its certificate) by server name; a
		// request for a host of another listener, as HTTP/2 connection reuse may send,
		// must go over a connection made for it (RFC 9110 §15.5.20).
		var sb hostBuf
		if pt.selectListener(sb.normalize(in.TLS.ServerName)) != lt {
			err = h.gw.localReply(ex, filter.Reply(http.StatusMisdirectedRequest, "misdirected_request",
				"this connection's TLS server name belongs to another listener than the request's host\n"))
			return
		}
	}
	if !lt.client.allows(in.TLS) {
		// The handshake did not verify a client certificate as this listener requires
		// (see clientAuth): a new connection for this host will.
		err = h.gw.localReply(ex, filter.Reply(http.StatusMisdirectedRequest, "client_certificate_required",
			"this connection did not present a client certificate this listener accepts\n"))
		return
	}
	if lt.pre != nil && !ex.runRequestFilter(lt.pre) {
		err = h.gw.respondLocal(ex)
		return
	}
	rt := lt.match(out)
	if rt != nil && rt.extproc != nil {
		ex.Route = rt.ir.Name
		if !ex.runRequestFilter(rt.extproc) {
			err = h.gw.respondLocal(ex)
			return
		}
	}
	if ex.ClearRouteCache {
		ex.ClearRouteCache = false
		rt = lt.match(out)
	}
	if rt == nil {
		err = h.gw.localReply(ex, filter.Reply(http.StatusNotFound, "route_not_found", "no route matches this request\n"))
		return
	}
	ex.route, ex.Route = rt, rt.ir.Name
	err = h.gw.serveRoute(ex, rt)
}

// refuseFraming answers a request whose framing the HTTP/1 scanner flagged, and closes
// the connection: bytes after it cannot be trusted to start a request.
func (g *Gateway) refuseFraming(ex *exchange, v framingViolation) error {
	r := filter.Reply(http.StatusBadRequest, v.details(), "Bad Request\n")
	r.Header["Connection"] = []string{"close"}
	return g.localReply(ex, r)
}

// match chooses the route for the request as it is now.
func (l *listenerTable) match(out *http.Request) *route {
	var hb hostBuf
	vh := l.selectVhost(hb.normalize(out.Host))
	if vh == nil {
		return nil
	}
	return vh.match(out, out.URL.Path)
}

// runRequestFilter starts a filter and runs its request side. It returns false when the
// filter answered locally; the reply is then in ex.pending.
func (ex *exchange) runRequestFilter(f filter.Factory) bool {
	inst := f.Start(&ex.Exchange)
	ex.instances = append(ex.instances, inst)
	if reply := inst.Request(ex.ctx, &ex.Exchange); reply != nil {
		ex.pendingReply(reply)
		return false
	}
	ex.responders = append(ex.responders, inst)
	return true
}

func (ex *exchange) pendingReply(r *filter.LocalReply) { ex.details = r.Details; ex.pending = r }

// newOutRequest prepares the request sent upstream: a shallow copy of the client's request
// sharing its header map, which the handler owns, minus what belongs to the client's hop.
func newOutRequest(ex *exchange, in *http.Request) *http.Request {
	out := in.WithContext(ex.ctx)
	u := *in.URL
	out.URL = &u
	out.RequestURI = ""
	out.Close = false
	if in.ContentLength == 0 {
		// A nil body tells the transport there is none; http.NoBody would do too.
		out.Body = nil
	}
	up := upgradeType(in.Header)
	removeHopByHop(out.Header, true)
	if up != "" {
		out.Header["Connection"] = []string{"Upgrade"}
		out.Header["Upgrade"] = []string{up}
	}
	// One backing array for the values the gateway sets; each header gets its own
	// capacity-limited slice, so that appending to one never writes into another.
	vals := make([]string, 4)
	if ip := ex.ClientAddr.Addr(); ip.IsValid() {
		client := ip.Unmap().String()
		if prior, ok := out.Header["X-Forwarded-For"]; ok {
			client = strings.Join(prior, ", ") + ", " + client
		}
		vals[0] = client
		out.Header["X-Forwarded-For"] = vals[0:1:1]
	}
	vals[1], vals[2] = ex.Scheme, in.Host
	out.Header["X-Forwarded-Proto"] = vals[1:2:2]
	out.Header["X-Forwarded-Host"] = vals[2:3:3]
	if id := out.Header["X-Request-Id"]; len(id) > 0 && id[0] != "" {
		ex.ID = id[0]
	} else {
		ex.ID = newRequestID()
		vals[3] = ex.ID
		out.Header["X-Request-Id"] = vals[3:4:4]
	}
	return out
}

// serveRoute applies the route's own behaviour and proxies the request upstream.
func (g *Gateway) serveRoute(ex *exchange, rt *route) error {
	out := ex.Request
	if c := rt.cors; c != nil {
		// First, as Envoy's CORS filter: a preflight is answered before the route
		// redirects or changes the request, and it never reaches the backend.
		ex.origin = firstValue(out.Header, hdrOrigin)
		if isPreflight(out.Method, out.Header) {
			return g.localReply(ex, c.preflight(ex.origin, out.Header))
		}
	}
	if rd := rt.ir.Redirect; rd != nil {
		return g.localReply(ex, redirectReply(ex, rt))
	}
	rt.reqHeaders.apply(out.Header)
	if rw := rt.ir.Rewrite; rw != nil {
		applyRewrite(out, rt, rw)
	}
	if d := rt.timeout(); d > 0 {
		ctx, cancel := context.WithCancelCause(ex.ctx)
		defer cancel(nil)
		ex.ctx, ex.cancel = ctx, cancel
		out = out.WithContext(ctx)
		t := time.AfterFunc(d, func() { ex.cancel(errRequestTimeout) })
		defer t.Stop()
	}
	if len(ex.instances) > 0 && out.Body != nil && out.Body != http.NoBody {
		// A filter's body reader may fail with a local reply; not every transport ends
		// the round trip when the body fails (the lean HTTP/1.1 client keeps waiting for
		// the upstream's answer), so the reply cancels the request, its cause.
		if ex.cancel == nil {
			ctx, cancel := context.WithCancelCause(ex.ctx)
			defer cancel(nil)
			ex.ctx, ex.cancel = ctx, cancel
			out = out.WithContext(ctx)
		}
		out.Body = &replyBody{ReadCloser: out.Body, cancel: ex.cancel}
	}
	if out.Trailer == nil && len(ex.in.Trailer) > 0 {
		out.Trailer = ex.in.Trailer
	}
	var rb *replayBody
	if (len(rt.mirrors) > 0 || rt.ir.Retry != nil) && out.Body != nil && out.Body != http.NoBody &&
		out.ContentLength <= maxReplayBody {
		rb = newReplayBody(out.Body, out.ContentLength)
		defer rb.finish()
	}
	if len(rt.mirrors) > 0 {
		g.mirror(ex, rt, out, rb)
	}
	if rt.ir.Retry != nil {
		return g.serveRetrying(ex, rt, out, rb)
	}
	var failure func() error
	switch {
	case rb != nil:
		out.Body, _ = rb.next()
		failure = rb.failure
	case out.Body != nil && out.Body != http.NoBody:
		cb := &clientBody{ReadCloser: out.Body}
		out.Body, failure = cb, cb.failure
	}
	w, ok := rt.pickBackend()
	if !ok || w.bal == nil {
		return g.localReply(ex, errBackendNotResolved())
	}
	ex.Backend = w.bal.backend.Name
	ex.metrics = w.metrics
	w.reqHeaders.apply(out.Header)
	resp, err := g.sendPicked(ex, w.bal, out)
	if err != nil {
		if failure != nil && failure() != nil && ex.in.Context().Err() == nil {
			return g.bodyFailed(ex, failure())
		}
		return g.upstreamFailed(ex, err)
	}
	return g.deliver(ex, rt, w.respHeaders, resp)
}

func errBackendNotResolved() *filter.LocalReply {
	return filter.Reply(http.StatusInternalServerError, "backend_not_resolved", "the route's backend could not be resolved\n")
}

func errNoHealthyUpstream() *filter.LocalReply {
	return filter.Reply(http.StatusServiceUnavailable, "no_healthy_upstream", "no healthy upstream\n")
}

// send makes one try of out, already addressed to an endpoint of b, in out's context.
func (g *Gateway) send(ex *exchange, b *balancer, out *http.Request) (*http.Response, error) {
	if g.opts.AccessLog != nil {
		// Only the access log reports the upstream's time: no clock reads without it.
		ex.upstreamStart = time.Now()
	}
	if b.h1 != nil {
		// The lean client takes the 1xx hook directly: no trace or context per request.
		return b.h1.Do(out, ex.got1xx)
	}
	out = out.WithContext(httptrace.WithClientTrace(out.Context(), &httptrace.ClientTrace{Got1xxResponse: ex.got1xx}))
	return b.tr.RoundTrip(out)
}

// deliver sends the upstream's response to the client, after the route's and the
// backendRef's (backendHeaders) response filters.
func (g *Gateway) deliver(ex *exchange, rt *route, backendHeaders *headerOps, resp *http.Response) error {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return g.handleUpgrade(ex, resp)
	}
	removeHopByHop(resp.Header, false)
	rt.respHeaders.apply(resp.Header)
	backendHeaders.apply(resp.Header)
	rt.cors.respond(ex.origin, resp.Header)
	return g.respond(ex, resp)
}

// timeout is the deadline of the whole exchange: the shorter of the route's timeouts, or,
// with retries, the request timeout alone (each try then has its own backend timeout).
func (rt *route) timeout() time.Duration {
	d, b := rt.ir.RequestTimeout, rt.ir.BackendTimeout
	if rt.ir.Retry != nil {
		return d
	}
	if d == 0 || (b > 0 && b < d) {
		d = b
	}
	return d
}

// got1xx forwards informational (1xx) responses to the client as they arrive.
func (ex *exchange) got1xx(code int, header textproto.MIMEHeader) error {
	if code == http.StatusContinue {
		// The client's server answers 100 Continue itself when the body is read.
		return nil
	}
	h := ex.rw.Header()
	for k, vv := range header {
		h[k] = vv
	}
	ex.rw.WriteHeader(code)
	clear(h)
	return nil
}

func (ex *exchange) setUpstreamDur() {
	if !ex.upstreamStart.IsZero() {
		ex.upstreamDur = time.Since(ex.upstreamStart)
	}
}

// upstreamFailed maps a round-trip error to the reply the client gets.
func (g *Gateway) upstreamFailed(ex *exchange, err error) error {
	ex.setUpstreamDur()
	var lr *filter.LocalReply
	var de *dialError
	switch {
	case errors.As(err, &lr):
		return g.localReply(ex, lr)
	case context.Cause(ex.ctx) == errRequestTimeout:
		g.metrics.upstreamError(ex, "timeout")
		return g.localReply(ex, filter.Reply(http.StatusGatewayTimeout, "upstream_timeout", "upstream request timeout\n"))
	case ex.in.Context().Err() != nil:
		ex.status, ex.details = 499, "downstream_disconnected"
		return err
	case errors.As(err, &de):
		g.metrics.upstreamError(ex, "connect")
		return g.localReply(ex, filter.Reply(http.StatusServiceUnavailable, "upstream_connect_failure", "upstream connect error\n"))
	default:
		g.metrics.upstreamError(ex, "reset")
		return g.localReply(ex, filter.Reply(http.StatusBadGateway, "upstream_reset", "upstream connection error\n"))
	}
}

// respond runs the response filters and sends resp to the client.
func (g *Gateway) respond(ex *exchange, resp *http.Response) error {
	ex.setUpstreamDur()
	for i := len(ex.responders) - 1; i >= 0; i-- {
		if reply := ex.responders[i].Response(ex.ctx, &ex.Exchange, resp); reply != nil {
			// Earlier filters still see the reply that replaces the response.
			ex.responders = ex.responders[:i]
			return g.localReply(ex, reply)
		}
	}
	return g.write(ex, resp)
}

// write sends the response headers, streams the body and then the trailers.
func (g *Gateway) write(ex *exchange, resp *http.Response) error {
	h := ex.rw.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	if _, ok := h["Content-Type"]; !ok {
		// A response without a Content-Type goes out without one: net/http would
		// otherwise sniff one from the body, a header nobody sent.
		h["Content-Type"] = nil
	}
	// An HTTP/2 upstream may send a length and trailers; HTTP/1.1 can carry trailers
	// only in a chunked body, so announced trailers win over the length.
	if resp.ContentLength >= 0 && len(resp.Trailer) == 0 {
		// The upstream's own header is kept when it says the same: no allocation.
		if cl := strconv.FormatInt(resp.ContentLength, 10); len(h["Content-Length"]) != 1 || h["Content-Length"][0] != cl {
			h["Content-Length"] = []string{cl}
		}
	} else {
		delete(h, "Content-Length")
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	ex.status = resp.StatusCode
	ex.rw.WriteHeader(resp.StatusCode)

	flush := resp.ContentLength == -1 || isEventStream(resp.Header)
	if flush {
		// A streamed body may take its time: the client gets the headers now, as the
		// upstream sent them, not with the first chunk.
		_ = http.NewResponseController(ex.rw).Flush()
	}
	n, err := copyBody(ex.rw, resp.Body, flush)
	ex.written += n
	if err != nil {
		var lr *filter.LocalReply
		if errors.As(err, &lr) {
			ex.details = lr.Details
		}
		if errors.Is(err, errClientWrite) {
			ex.details = "downstream_disconnected"
			return err
		}
		// The headers are gone: resetting the client's stream is the only way left to
		// say that the response is incomplete.
		ex.details = nonEmpty(ex.details, "upstream_reset_after_response_started")
		g.metrics.upstreamError(ex, "reset_after_headers")
		ex.aborted = fmt.Errorf("response body: %w", err)
		panic(http.ErrAbortHandler)
	}
	if len(resp.Trailer) > 0 {
		for k, vv := range resp.Trailer {
			if _, ok := h[k]; !ok && !isAnnounced(h["Trailer"], k) {
				k = http.TrailerPrefix + k
			}
			h[k] = vv
		}
	}
	if isGRPC(ex.in) {
		// In the trailers, or in the headers of a trailers-only response.
		ex.grpcStatus = nonEmpty(resp.Trailer.Get("Grpc-Status"), resp.Header.Get("Grpc-Status"))
	}
	return nil
}

func isAnnounced(trailer []string, k string) bool {
	for _, t := range trailer {
		for f := range strings.SplitSeq(t, ",") {
			if strings.EqualFold(strings.TrimSpace(f), k) {
				return true
			}
		}
	}
	return false
}

func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream")
}

func nonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// respondLocal sends the reply a filter made in its request phase.
func (g *Gateway) respondLocal(ex *exchange) error {
	r := ex.pending
	ex.pending = nil
	return g.localReply(ex, r)
}

// localReply sends a reply made by the gateway, through the response side of the filters
// that already ran, as Envoy does.
func (g *Gateway) localReply(ex *exchange, r *filter.LocalReply) error {
	if isGRPC(ex.in) {
		r = grpcLocalReply(r)
	}
	ex.details = nonEmpty(r.Details, ex.details)
	resp := &http.Response{
		StatusCode:    r.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.Header,
		ContentLength: int64(len(r.Body)),
		Body:          io.NopCloser(strings.NewReader(string(r.Body))),
		Request:       ex.Request,
	}
	if resp.Header == nil {
		resp.Header = make(http.Header)
	}
	if ex.route != nil {
		// A route's local replies (redirects, preflights, errors) carry its CORS headers
		// too, as Envoy's: a browser can then follow the redirect or read the error.
		ex.route.cors.respond(ex.origin, resp.Header)
	}
	if len(ex.responders) > 0 {
		responders := ex.responders
		ex.responders = nil
		for i := len(responders) - 1; i >= 0; i-- {
			if reply := responders[i].Response(ex.ctx, &ex.Exchange, resp); reply != nil {
				ex.responders = responders[:i]
				return g.localReply(ex, reply)
			}
		}
	}
	return g.write(ex, resp)
}

// replyBody cancels the request with the local reply a filter's body reader fails with.
type replyBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *replyBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		var lr *filter.LocalReply
		if errors.As(err, &lr) && lr != nil {
			b.cancel(lr)
		}
	}
	return n, err
}
