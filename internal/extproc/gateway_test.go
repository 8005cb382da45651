package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// ---- the upstream ----

// seen is what the upstream received.
type seen struct {
	Method, Path, Host string
	Header             http.Header
	Body               string
	ContentLength      int64
	Chunked            bool
	Trailer            http.Header
}

type upstream struct {
	srv  *httptest.Server
	reqs chan seen
}

// newUpstream starts an upstream that records each request (after reading its whole
// body) and answers with respond (nil: 200 "upstream says hi").
func newUpstream(t testing.TB, respond http.HandlerFunc) *upstream {
	u := &upstream{reqs: make(chan seen, 64)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.reqs <- seen{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Header: r.Header.Clone(),
			Body: string(b), ContentLength: r.ContentLength, Chunked: len(r.TransferEncoding) > 0, Trailer: r.Trailer.Clone()}
		if respond != nil {
			respond(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "upstream says hi")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) seen(t testing.TB) seen {
	t.Helper()
	select {
	case s := <-u.reqs:
		return s
	case <-time.After(waitFor):
		t.Fatal("upstream saw no request")
	}
	return seen{}
}

func (u *upstream) none(t testing.TB) {
	t.Helper()
	select {
	case s := <-u.reqs:
		t.Fatalf("upstream saw %s %s, want nothing", s.Method, s.Path)
	default:
	}
}

// ---- the gateway: a test-only stand-in for the data plane ----

type gateway struct {
	t      testing.TB
	pool   *Pool
	fac    filter.Factory
	up     *upstream
	routes map[string]*upstream // by host, used after ClearRouteCache
	srv    *httptest.Server
	client *http.Client
	tr     *http.Transport
	reg    *prometheus.Registry
	// exchanges receives each exchange after Done.
	exchanges chan *filter.Exchange
	doneErrs  chan error
}

type gwOption func(*gwConfig)

type gwConfig struct {
	pool     PoolOptions
	respond  http.HandlerFunc
	routes   map[string]http.HandlerFunc
	metadata map[string]map[string]any
}

func withPool(o PoolOptions) gwOption                   { return func(c *gwConfig) { c.pool = o } }
func withUpstream(h http.HandlerFunc) gwOption          { return func(c *gwConfig) { c.respond = h } }
func withRoutes(r map[string]http.HandlerFunc) gwOption { return func(c *gwConfig) { c.routes = r } }

func backendOf(p *testProc) *ir.Backend {
	return &ir.Backend{Name: "backend/test/proc", Protocol: ir.UpstreamH2C,
		Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: p.port}}}
}

func newGateway(t testing.TB, spec *v1alpha1.ExtProc, p *testProc, opts ...gwOption) *gateway {
	t.Helper()
	var c gwConfig
	for _, o := range opts {
		o(&c)
	}
	g := &gateway{t: t, up: newUpstream(t, c.respond), exchanges: make(chan *filter.Exchange, 64),
		doneErrs: make(chan error, 64), reg: prometheus.NewRegistry()}
	if c.pool.Logger == nil {
		// Debug, so that message logging and redaction run in every test.
		c.pool.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if c.pool.Metrics == nil {
		c.pool.Metrics = NewMetrics(g.reg)
	}
	if spec.MessageTimeout == nil {
		// Envoy's 200ms default is too tight for a loaded -race run; tests about
		// timeouts set their own.
		spec.MessageTimeout = &metav1.Duration{Duration: 2 * time.Second}
	}
	g.pool = NewPool(c.pool)
	t.Cleanup(func() { _ = g.pool.Close() })
	fac, err := g.pool.Build(&ir.ExtProc{Policy: "test/proc", Backend: backendOf(p), Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	g.fac = fac
	if len(c.routes) > 0 {
		g.routes = map[string]*upstream{}
		for host, h := range c.routes {
			g.routes[host] = newUpstream(t, h)
		}
	}
	g.tr = &http.Transport{DisableCompression: true}
	t.Cleanup(g.tr.CloseIdleConnections)
	g.srv = httptest.NewServer(g)
	t.Cleanup(g.srv.Close)
	ct := &http.Transport{DisableCompression: true}
	t.Cleanup(ct.CloseIdleConnections)
	g.client = &http.Client{Transport: ct, Timeout: 2 * waitFor}
	return g
}

func (g *gateway) route(host string) *upstream {
	if g.routes == nil {
		return g.up
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return g.routes[host]
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	// The server fills r.Trailer at the end of the body; share it, as the data plane does.
	out.Trailer = r.Trailer
	out.RequestURI = ""
	out.URL.Scheme = "http"
	ex := &filter.Exchange{Request: out, Scheme: "http", ID: "req-1", Start: time.Now(), Route: "test/route"}
	inst := g.fac.Start(ex)
	var doneErr error
	defer func() {
		inst.Done(doneErr)
		g.doneErrs <- doneErr
		g.exchanges <- ex
	}()
	up := g.route(r.Host)
	if lr := inst.Request(r.Context(), ex); lr != nil {
		writeLocal(w, lr)
		return
	}
	if ex.ClearRouteCache {
		up = g.route(out.Host)
	}
	if up == nil {
		http.Error(w, "no route", http.StatusNotFound)
		return
	}
	out.URL.Host = up.srv.Listener.Addr().String()
	resp, err := g.tr.RoundTrip(out)
	if err != nil {
		doneErr = err
		var lr *filter.LocalReply
		if errors.As(err, &lr) {
			writeLocal(w, lr)
			return
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if lr := inst.Response(r.Context(), ex, resp); lr != nil {
		writeLocal(w, lr)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.Header().Del("Content-Length")
	if resp.ContentLength >= 0 && len(resp.Trailer) == 0 {
		// Trailers need chunked encoding on HTTP/1, as in the data plane.
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				doneErr = werr
				return
			}
			fl.Flush()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// Headers went out: resetting the stream is all that is left.
			doneErr = err
			panic(http.ErrAbortHandler)
		}
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			w.Header().Add(http.TrailerPrefix+k, v)
		}
	}
}

func writeLocal(w http.ResponseWriter, lr *filter.LocalReply) {
	for k, vs := range lr.Header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(lr.Body)))
	w.Header().Set("X-Local-Reply", lr.Details)
	w.WriteHeader(lr.Status)
	_, _ = w.Write(lr.Body)
}

// result is what the client saw.
type result struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
	Err     error
}

// do sends a request through the gateway.
func (g *gateway) do(method, path string, body io.Reader, hdr ...string) result {
	g.t.Helper()
	req, err := http.NewRequest(method, g.srv.URL+path, body)
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return g.send(req)
}

func (g *gateway) send(req *http.Request) result {
	resp, err := g.client.Do(req)
	if err != nil {
		return result{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Trailer: resp.Trailer, Err: err}
}

// exchange waits for the exchange of the request just done (after Done).
func (g *gateway) exchange() *filter.Exchange {
	g.t.Helper()
	select {
	case ex := <-g.exchanges:
		<-g.doneErrs
		return ex
	case <-time.After(waitFor):
		g.t.Fatal("exchange did not finish")
	}
	return nil
}

// ---- spec helpers ----

func spec(mod ...func(*v1alpha1.ExtProc)) *v1alpha1.ExtProc {
	s := &v1alpha1.ExtProc{}
	for _, m := range mod {
		m(s)
	}
	return s
}

func opts(s *v1alpha1.ExtProc) *v1alpha1.ProcessingOptions {
	if s.ProcessingOptions == nil {
		s.ProcessingOptions = &v1alpha1.ProcessingOptions{}
	}
	return s.ProcessingOptions
}

func failOpen(s *v1alpha1.ExtProc) { s.FailureMode = v1alpha1.FailOpen }

func timeout(d time.Duration) func(*v1alpha1.ExtProc) {
	return func(s *v1alpha1.ExtProc) { s.MessageTimeout = &metav1.Duration{Duration: d} }
}

func bodies(req, resp v1alpha1.BodySendMode) func(*v1alpha1.ExtProc) {
	return func(s *v1alpha1.ExtProc) { opts(s).RequestBodyMode, opts(s).ResponseBodyMode = req, resp }
}

func trailers(req, resp v1alpha1.HeaderSendMode) func(*v1alpha1.ExtProc) {
	return func(s *v1alpha1.ExtProc) { opts(s).RequestTrailerMode, opts(s).ResponseTrailerMode = req, resp }
}

func headers(req, resp v1alpha1.HeaderSendMode) func(*v1alpha1.ExtProc) {
	return func(s *v1alpha1.ExtProc) { opts(s).RequestHeaderMode, opts(s).ResponseHeaderMode = req, resp }
}

func bufferSize(n int64) func(*v1alpha1.ExtProc) {
	return func(s *v1alpha1.ExtProc) { s.MaxBufferSize = resource.NewQuantity(n, resource.BinarySI) }
}

func statusOnError(code int32) func(*v1alpha1.ExtProc) {
	return func(s *v1alpha1.ExtProc) { s.StatusOnError = &code }
}

// chunked returns a body of unknown length (sent chunked), one part per Read.
func chunked(parts ...string) io.Reader { return &partsReader{parts: parts} }

type partsReader struct{ parts []string }

func (r *partsReader) Read(p []byte) (int, error) {
	for len(r.parts) > 0 && r.parts[0] == "" {
		r.parts = r.parts[1:]
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	return n, nil
}

var mutationRulesAllowRouting = v1alpha1.MutationRules{AllowAllRouting: true}

func cloneAnswer(m *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
	return proto.Clone(m).(*extprocv3.ProcessingResponse)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// chain runs several filters in order, as the data plane's filter chain does.
type chain []filter.Factory

func (c chain) Start(ex *filter.Exchange) filter.Instance {
	out := make(chainInstance, len(c))
	for i, f := range c {
		out[i] = f.Start(ex)
	}
	return out
}

type chainInstance []filter.Instance

func (c chainInstance) Request(ctx context.Context, ex *filter.Exchange) *filter.LocalReply {
	for _, in := range c {
		if lr := in.Request(ctx, ex); lr != nil {
			return lr
		}
	}
	return nil
}

func (c chainInstance) Response(ctx context.Context, ex *filter.Exchange, resp *http.Response) *filter.LocalReply {
	for i := len(c) - 1; i >= 0; i-- {
		if lr := c[i].Response(ctx, ex, resp); lr != nil {
			return lr
		}
	}
	return nil
}

func (c chainInstance) Done(err error) {
	for _, in := range c {
		in.Done(err)
	}
}
