package dataplane

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// mirrorSink is a mirror backend that reports each request it gets on a channel.
func mirrorSink(t *testing.T, name string) (*ir.Backend, <-chan seen) {
	t.Helper()
	ch := make(chan seen, 1024)
	srv := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		ch <- seen{Backend: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery,
			Header: r.Header.Clone(), BodySize: int(n)}
		w.WriteHeader(http.StatusTeapot)
	}))
	return backendOf(t, name, srv), ch
}

// mirrorCount reads sluice_mirror_requests_total for route default/r/0/0, backend
// "mirror" and outcome.
func mirrorCount(t *testing.T, g *testGateway, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.metrics.mirrors.WithLabelValues("default/r/0/0", "mirror", outcome).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func mirroredRoute(main *ir.Backend, mirrors ...ir.Mirror) *ir.Route {
	r := prefixRoute("default/r/0/0", "/", main)
	r.Mirrors = mirrors
	return r
}

func TestMirrorCopiesRequestAfterRouteFilters(t *testing.T) {
	reg := prometheus.NewRegistry()
	main := backendOf(t, "main", echoBackend(t, "main"))
	mb, got := mirrorSink(t, "mirror")
	r := mirroredRoute(main, ir.Mirror{Backend: mb, Numerator: 1, Denominator: 1})
	r.RequestHeaders = &ir.HeaderModifier{Set: []ir.Header{{Name: "X-Set", Value: "v"}}, Remove: []string{"X-Remove"}}
	// The backendRef's own filters are for its requests only, not the mirror's.
	r.Backends[0].RequestHeaders = &ir.HeaderModifier{Set: []ir.Header{{Name: "X-Main-Only", Value: "1"}}}
	g := startGateway(t, Options{Metrics: NewMetrics(reg)}, simpleConfig(r))

	req, _ := http.NewRequest(http.MethodPost, g.URL+"/p?q=1", strings.NewReader("hello"))
	req.Host = "example.com:8080"
	req.Header.Set("X-Remove", "x")
	resp, body := do(t, newClient(t), req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want the main backend's 200: %s", resp.StatusCode, body)
	}
	if s := decodeSeen(t, body); s.Backend != "main" || s.BodySize != 5 || s.Header.Get("X-Main-Only") != "1" {
		t.Fatalf("main backend saw %+v", s)
	}
	m := recvWithin(t, got, "the mirrored request")
	if m.Method != http.MethodPost || m.Path != "/p" || m.Query != "q=1" || m.BodySize != 5 {
		t.Errorf("mirror saw %s %s?%s with %d body bytes, want POST /p?q=1 with 5", m.Method, m.Path, m.Query, m.BodySize)
	}
	if m.Host != "example.com-shadow:8080" {
		t.Errorf("mirror Host %q, want the -shadow suffix before the port", m.Host)
	}
	if m.Header.Get("X-Set") != "v" || m.Header.Get("X-Remove") != "" || m.Header.Get("X-Main-Only") != "" {
		t.Errorf("mirror headers %v: want the route's filters applied, not the backendRef's", m.Header)
	}
	eventually(t, "the mirror metric", func() bool {
		return mirrorCount(t, g, mirrorOK) == 1
	})
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":      "example.com-shadow",
		"example.com:8080": "example.com-shadow:8080",
		"10.0.0.1:80":      "10.0.0.1-shadow:80",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMirrorNeverDelaysOrChangesTheResponse(t *testing.T) {
	main := backendOf(t, "main", echoBackend(t, "main"))
	var arrived atomic.Int32
	slow := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		// Held until the gateway shuts down and cancels the copy.
		<-r.Context().Done()
	}))
	failing := &ir.Backend{Name: "refused", Protocol: ir.UpstreamHTTP1,
		Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: freePort(t)}}}
	empty := &ir.Backend{Name: "empty", Protocol: ir.UpstreamHTTP1}
	g := startGateway(t, Options{}, simpleConfig(mirroredRoute(main,
		ir.Mirror{Backend: backendOf(t, "slow", slow), Numerator: 1, Denominator: 1},
		ir.Mirror{Backend: failing, Numerator: 1, Denominator: 1},
		ir.Mirror{Backend: empty, Numerator: 1, Denominator: 1})))
	c := newClient(t)
	for range 3 {
		start := time.Now()
		resp, body := get(t, c, g.URL, "", "/")
		if resp.StatusCode != http.StatusOK || decodeSeen(t, body).Backend != "main" {
			t.Fatalf("status %d body %s, want the main backend's answer", resp.StatusCode, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the response took %s: the mirror delayed it", d)
		}
	}
	eventually(t, "the copies to reach the slow mirror", func() bool { return arrived.Load() == 3 })
}

func TestMirrorSampling(t *testing.T) {
	main := backendOf(t, "main", echoBackend(t, "main"))
	quarter, gotQuarter := mirrorSink(t, "quarter")
	all, gotAll := mirrorSink(t, "all")
	g := startGateway(t, Options{}, simpleConfig(mirroredRoute(main,
		ir.Mirror{Backend: quarter, Numerator: 1, Denominator: 4},
		ir.Mirror{Backend: all, Numerator: 100, Denominator: 100})))
	c := newClient(t)
	const n = 400
	for range n {
		get(t, c, g.URL, "", "/")
	}
	for range n {
		recvWithin(t, gotAll, "a copy for the 100% mirror")
	}
	// Every copy of the quarter mirror was sent with its request: by now, those not yet
	// received are in flight. Binomial(400, 1/4): mean 100, deviation 8.7.
	eventually(t, "the quarter mirror's copies", func() bool { return len(gotQuarter) >= 60 })
	time.Sleep(100 * time.Millisecond)
	if k := len(gotQuarter); k < 60 || k > 140 {
		t.Errorf("the 1/4 mirror got %d copies of %d requests, want about 100", k, n)
	}
}

func TestMirrorBodies(t *testing.T) {
	reg := prometheus.NewRegistry()
	main := backendOf(t, "main", echoBackend(t, "main"))
	mb, got := mirrorSink(t, "mirror")
	g := startGateway(t, Options{Metrics: NewMetrics(reg)}, simpleConfig(mirroredRoute(main,
		ir.Mirror{Backend: mb, Numerator: 1, Denominator: 1})))
	c := newClient(t)
	post := func(body io.Reader, length int64) seen {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, g.URL+"/", body)
		req.ContentLength = length
		resp, b := do(t, c, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return decodeSeen(t, b)
	}
	// The largest replayable body is copied whole.
	if s := post(bytes.NewReader(make([]byte, maxReplayBody)), maxReplayBody); s.BodySize != maxReplayBody {
		t.Fatalf("main backend got %d bytes, want %d", s.BodySize, maxReplayBody)
	}
	if m := recvWithin(t, got, "the mirrored body"); m.BodySize != maxReplayBody {
		t.Fatalf("mirror got %d bytes, want %d", m.BodySize, maxReplayBody)
	}
	// A body of unknown length (chunked) within the limit is copied whole once read.
	if s := post(io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked")), -1); s.BodySize != 7 {
		t.Fatalf("main backend got %d bytes, want 7", s.BodySize)
	}
	if m := recvWithin(t, got, "the mirrored chunked body"); m.BodySize != 7 {
		t.Fatalf("mirror got %d bytes, want 7", m.BodySize)
	}
	// Larger, announced or found while streaming (chunked): the request goes to the
	// main backend whole, and is not mirrored.
	if s := post(bytes.NewReader(make([]byte, maxReplayBody+1)), maxReplayBody+1); s.BodySize != maxReplayBody+1 {
		t.Fatalf("main backend got %d bytes, want %d", s.BodySize, maxReplayBody+1)
	}
	if s := post(io.MultiReader(bytes.NewReader(make([]byte, 3*maxReplayBody))), -1); s.BodySize != 3*maxReplayBody {
		t.Fatalf("main backend got %d bytes, want %d", s.BodySize, 3*maxReplayBody)
	}
	if n := mirrorCount(t, g, mirrorNotReplayable); n != 2 {
		t.Errorf("%v copies counted as body_not_replayable, want 2", n)
	}
	get(t, c, g.URL, "", "/after")
	if m := recvWithin(t, got, "the next mirrored request"); m.Path != "/after" {
		t.Errorf("mirror got %s, want /after: a large body was mirrored", m.Path)
	}
}

func TestMirrorPoolBounds(t *testing.T) {
	p := newMirrorPool()
	for i := range maxMirrorsInFlight {
		if !p.acquire() {
			t.Fatalf("slot %d refused", i)
		}
	}
	if p.acquire() {
		t.Fatal("a slot beyond maxMirrorsInFlight was given")
	}
	p.release()
	if !p.acquire() {
		t.Fatal("a released slot was not given again")
	}
	done := make(chan struct{})
	go func() {
		p.close()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("close returned with mirrors in flight")
	case <-time.After(50 * time.Millisecond):
	}
	if p.ctx.Err() == nil {
		t.Error("close did not cancel the mirrors in flight")
	}
	for range maxMirrorsInFlight {
		p.release()
	}
	recvWithin(t, done, "close")
	if p.acquire() {
		t.Error("a closed pool gave a slot")
	}
}

// An HTTP/2 request body reports its end only on the read after its last bytes, which a
// transport that knows the length never makes: the copy still leaves once the body is
// read to its announced length.
func TestMirrorHTTP2RequestBody(t *testing.T) {
	main := backendOf(t, "main", echoBackend(t, "main"))
	mb, got := mirrorSink(t, "mirror")
	g := startGateway(t, Options{}, simpleConfig(mirroredRoute(main,
		ir.Mirror{Backend: mb, Numerator: 1, Denominator: 1})))
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/", strings.NewReader("hello"))
	req.ContentLength = 5
	resp, b := do(t, newH2CClient(t), req)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || decodeSeen(t, b).BodySize != 5 {
		t.Fatalf("%s %d: %s", resp.Proto, resp.StatusCode, b)
	}
	if m := recvWithin(t, got, "the mirrored body"); m.BodySize != 5 {
		t.Fatalf("mirror got %d bytes, want 5", m.BodySize)
	}
}
