package dataplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// flaky is a backend whose first fails requests fail as mode says, as the conformance
// suite's echo backend does with responseCode and succeedAfter; later ones are echoed.
type flaky struct {
	mode  string // "500", "503"...: that status; "reset": a TCP RST; "reset-early": a TCP RST after the body's first KiB; "slow": no answer in time
	fails int32
	tries atomic.Int32
	// reset, when not nil, is closed after the first reset.
	reset chan struct{}
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.tries.Add(1) > f.fails {
		echoHandler("flaky")(w, r)
		return
	}
	if f.mode == "reset-early" {
		_, _ = io.CopyN(io.Discard, r.Body, 1<<10)
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	switch f.mode {
	case "reset", "reset-early":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
		if f.reset != nil && f.tries.Load() == 1 {
			close(f.reset)
		}
	case "slow":
		select {
		case <-r.Context().Done():
		case <-time.After(wait):
		}
	default:
		code := 0
		for _, c := range f.mode {
			code = code*10 + int(c-'0')
		}
		w.Header().Set("Content-Length", "6")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "failed")
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	small := strings.Repeat("b", 1000)
	tests := []struct {
		name    string
		mode    string
		fails   int32
		retry   ir.Retry
		backend time.Duration // the route's backend timeout
		request time.Duration // the route's request timeout
		body    io.Reader     // a POST body, nil for a GET
		length  int64         // the body's Content-Length; -1 for chunked
		h2c     bool          // the backend speaks h2c (net/http's transport) rather than HTTP/1.1
		want    int
		tries   int32 // the backend's tries
		// maxTries, when set, allows from tries to maxTries, for cases timed by the clock.
		maxTries int32
		// size is the body's size when length is -1.
		size int
	}{
		// The cases of the HTTPRouteRetry conformance test.
		{name: "500 succeeds after 2 retries", mode: "500", fails: 2, retry: ir.Retry{Codes: []int{500}, Attempts: 3}, want: 200, tries: 3},
		{name: "500 beyond attempts", mode: "500", fails: 4, retry: ir.Retry{Codes: []int{500}, Attempts: 3}, want: 500, tries: 4},
		{name: "503 not retried", mode: "503", fails: 2, retry: ir.Retry{Codes: []int{500}, Attempts: 3}, want: 503, tries: 1},
		{name: "502 succeeds after 1 retry", mode: "502", fails: 1, retry: ir.Retry{Codes: []int{500, 502, 503, 504}, Attempts: 2}, want: 200, tries: 2},
		{name: "504 beyond attempts", mode: "504", fails: 3, retry: ir.Retry{Codes: []int{500, 502, 503, 504}, Attempts: 2}, want: 504, tries: 3},
		{name: "429 when listed", mode: "429", fails: 1, retry: ir.Retry{Codes: []int{429}, Attempts: 1}, want: 200, tries: 2},
		{name: "attempts 0 tries once", mode: "500", fails: 1, retry: ir.Retry{Codes: []int{500}}, want: 500, tries: 1},
		{name: "no codes retries no status", mode: "500", fails: 1, retry: ir.Retry{Attempts: 2}, want: 500, tries: 1},
		// HTTPRouteRetryConnectionError: a reset before any response is retried.
		{name: "reset succeeds after retries", mode: "reset", fails: 2, retry: ir.Retry{Attempts: 2}, want: 200, tries: 3},
		{name: "reset beyond attempts", mode: "reset", fails: 3, retry: ir.Retry{Codes: []int{500}, Attempts: 2}, want: 502, tries: 3},
		// HTTPRouteRetryBackendTimeout: a try past the backend timeout is retried.
		{name: "backend timeout retried", mode: "slow", fails: 1, retry: ir.Retry{Attempts: 1}, backend: 200 * time.Millisecond, want: 200, tries: 2},
		{name: "backend timeout beyond attempts", mode: "slow", fails: 3, retry: ir.Retry{Attempts: 2}, backend: 100 * time.Millisecond, want: 504, tries: 3},
		{name: "request timeout ends retries", mode: "slow", fails: 100, retry: ir.Retry{Attempts: 100}, backend: 100 * time.Millisecond, request: 350 * time.Millisecond, want: 504, tries: 2, maxTries: 4},
		// Bodies.
		{name: "small body replayed", mode: "500", fails: 1, retry: ir.Retry{Codes: []int{500}, Attempts: 1}, body: strings.NewReader(small), length: int64(len(small)), want: 200, tries: 2},
		{name: "small body replayed after reset", mode: "reset", fails: 1, retry: ir.Retry{Attempts: 1}, body: strings.NewReader(small), length: int64(len(small)), want: 200, tries: 2},
		{name: "h2c body replayed", mode: "503", fails: 2, retry: ir.Retry{Codes: []int{503}, Attempts: 2}, h2c: true, body: strings.NewReader(small), length: int64(len(small)), want: 200, tries: 3},
		{name: "h2c backend timeout retried", mode: "slow", fails: 1, retry: ir.Retry{Attempts: 1}, backend: 200 * time.Millisecond, h2c: true, want: 200, tries: 2},
		{name: "chunked body replayed", mode: "500", fails: 1, retry: ir.Retry{Codes: []int{500}, Attempts: 1}, body: strings.NewReader(small), length: -1, want: 200, tries: 2, size: len(small)},
		{name: "largest body replayed", mode: "500", fails: 2, retry: ir.Retry{Codes: []int{500}, Attempts: 2}, body: bytes.NewReader(make([]byte, maxReplayBody)), length: maxReplayBody, want: 200, tries: 3},
		// The backend resets the connection after the body's first KiB, and the client
		// sends the rest of its body only then: the retry sends the body from its first
		// byte, then the rest as the client sends it.
		{name: "body replayed after reset mid-body", mode: "reset-early", fails: 1, retry: ir.Retry{Attempts: 1}, body: strings.NewReader(strings.Repeat("x", 8<<10)), length: -1, want: 200, tries: 2, size: 40 << 10},
		{name: "large body not retried", mode: "500", fails: 1, retry: ir.Retry{Codes: []int{500}, Attempts: 1}, body: bytes.NewReader(make([]byte, maxReplayBody+1)), length: maxReplayBody + 1, want: 500, tries: 1},
		{name: "large chunked body not retried", mode: "500", fails: 1, retry: ir.Retry{Codes: []int{500}, Attempts: 1}, body: bytes.NewReader(make([]byte, 2*maxReplayBody)), length: -1, want: 500, tries: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &flaky{mode: tc.mode, fails: tc.fails}
			reqBody := tc.body
			if tc.mode == "reset-early" {
				f.reset = make(chan struct{})
				reqBody = io.MultiReader(tc.body, &gated{gate: f.reset, r: strings.NewReader(strings.Repeat("y", 32<<10))})
			}
			b := backendOf(t, "flaky", newBackend(t, f))
			if tc.h2c {
				b = backendOf(t, "flaky", newH2CBackend(t, f))
				b.Protocol = ir.UpstreamH2C
			}
			r := prefixRoute("r", "/", b)
			r.Retry = &tc.retry
			r.BackendTimeout, r.RequestTimeout = tc.backend, tc.request
			g := startGateway(t, Options{}, simpleConfig(r))
			req, err := http.NewRequest(http.MethodGet, g.URL+"/x", nil)
			if tc.body != nil {
				req, err = http.NewRequest(http.MethodPost, g.URL+"/x", io.NopCloser(reqBody))
				req.ContentLength = tc.length
			}
			if err != nil {
				t.Fatal(err)
			}
			resp, body := do(t, newClient(t), req)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if got := f.tries.Load(); got < tc.tries || got > max(tc.tries, tc.maxTries) {
				t.Errorf("backend tried %d times, want %d (to %d)", got, tc.tries, max(tc.tries, tc.maxTries))
			}
			if tc.body != nil && resp.StatusCode == 200 {
				want := tc.length
				if want < 0 {
					want = int64(tc.size)
				}
				if s := decodeSeen(t, body); int64(s.BodySize) != want {
					t.Errorf("the backend got %d body bytes, want %d", s.BodySize, want)
				}
			}
		})
	}
}

// gated reads r once gate is closed, or fails after a while.
type gated struct {
	gate <-chan struct{}
	r    io.Reader
}

func (g *gated) Read(p []byte) (int, error) {
	select {
	case <-g.gate:
		return g.r.Read(p)
	case <-time.After(wait):
		return 0, errors.New("the gate stayed closed")
	}
}

// TestRetryBackoff checks that retries wait at least the backoff, and that the request
// timeout cuts the wait short.
func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		retry    ir.Retry
		request  time.Duration
		want     int
		min, max time.Duration
	}{
		{name: "two retries wait 100ms then 200ms", retry: ir.Retry{Codes: []int{503}, Attempts: 2, Backoff: 100 * time.Millisecond},
			want: 200, min: 300 * time.Millisecond, max: 2 * time.Second},
		{name: "request timeout during the wait", retry: ir.Retry{Codes: []int{503}, Attempts: 2, Backoff: 5 * time.Second},
			request: 200 * time.Millisecond, want: 504, min: 200 * time.Millisecond, max: 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &flaky{mode: "503", fails: 2}
			r := prefixRoute("r", "/", backendOf(t, "flaky", newBackend(t, f)))
			r.Retry, r.RequestTimeout = &tc.retry, tc.request
			g := startGateway(t, Options{}, simpleConfig(r))
			start := time.Now()
			resp, body := get(t, newClient(t), g.URL, "", "/")
			took := time.Since(start)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if took < tc.min || took > tc.max {
				t.Errorf("took %v, want %v to %v", took, tc.min, tc.max)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	const base = 25 * time.Millisecond
	tests := []struct {
		n        int
		base     time.Duration
		min, max time.Duration
	}{
		{n: 1, base: base, min: base, max: base * 3 / 2},
		{n: 2, base: base, min: 2 * base, max: 3 * base},
		{n: 4, base: base, min: 8 * base, max: 12 * base},
		{n: 5, base: base, min: 10 * base, max: 15 * base},
		{n: 1000, base: base, min: 10 * base, max: 15 * base},
		{n: 3, base: 0, min: 0, max: 0},
	}
	for _, tc := range tests {
		for range 100 {
			if d := retryDelay(tc.base, tc.n); d < tc.min || d > tc.max {
				t.Fatalf("retryDelay(%v, %d) = %v, want %v to %v", tc.base, tc.n, d, tc.min, tc.max)
			}
		}
	}
}

// TestRetryPicksBackendAgain checks that a retry chooses a backend by weight again, and
// that each try carries only its own backendRef's request headers.
func TestRetryPicksBackendAgain(t *testing.T) {
	t.Parallel()
	refused := &ir.Backend{Name: "refused", Protocol: ir.UpstreamHTTP1,
		Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: freePort(t)}}}
	r := prefixRoute("r", "/", nil)
	r.Backends = []ir.WeightedBackend{
		{Weight: 1, Backend: refused, RequestHeaders: &ir.HeaderModifier{Add: []ir.Header{{Name: "X-Via", Value: "refused"}}}},
		{Weight: 1, Backend: backendOf(t, "echo", echoBackend(t, "echo")), RequestHeaders: &ir.HeaderModifier{Add: []ir.Header{{Name: "X-Via", Value: "echo"}}}},
	}
	r.Retry = &ir.Retry{Attempts: 20}
	g := startGateway(t, Options{}, simpleConfig(r))
	c := newClient(t)
	for range 10 {
		resp, body := get(t, c, g.URL, "", "/")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if via := decodeSeen(t, body).Header["X-Via"]; len(via) != 1 || via[0] != "echo" {
			t.Fatalf("X-Via %q, want [echo]", via)
		}
	}
}

// TestRetryObserved checks the retry counter and the access log's retries.
func TestRetryObserved(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	reg := prometheus.NewRegistry()
	refused := &ir.Backend{Name: "refused", Protocol: ir.UpstreamHTTP1,
		Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: freePort(t)}}}
	r := prefixRoute("r", "/", refused)
	r.Retry = &ir.Retry{Attempts: 2}
	g := startGateway(t, Options{AccessLog: slog.New(slog.NewJSONHandler(&buf, nil)), Metrics: NewMetrics(reg)}, simpleConfig(r))
	resp, body := get(t, newClient(t), g.URL, "", "/")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", resp.StatusCode, body)
	}
	eventually(t, "an access log line", func() bool { return len(buf.lines()) == 1 })
	var line map[string]any
	if err := json.Unmarshal([]byte(buf.lines()[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line["retries"] != 2.0 || line["details"] != "upstream_connect_failure" {
		t.Errorf("access log line %v", line)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `sluice_upstream_retries_total{backend="refused",route="r"} 2`; !strings.Contains(rec.Body.String(), want+"\n") {
		t.Errorf("metrics lack %s:\n%s", want, rec.Body.String())
	}
}

func TestRetryBudgetLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		active, retrying int64
		want             bool
	}{
		{active: 0, retrying: 0, want: true},
		{active: 1, retrying: 2, want: true},
		{active: 10, retrying: 2, want: true},
		{active: 10, retrying: 3, want: false}, // 20% of 10 is 2: the minimum, 3, applies
		{active: 100, retrying: 19, want: true},
		{active: 100, retrying: 20, want: false},
		{active: 1000, retrying: 199, want: true},
	}
	for _, tc := range tests {
		var b retryBudget
		b.active.Store(tc.active)
		b.retrying.Store(tc.retrying)
		if got := b.acquire(); got != tc.want {
			t.Errorf("%d active, %d retrying: acquire %v, want %v", tc.active, tc.retrying, got, tc.want)
		}
		if want := tc.retrying + map[bool]int64{true: 1}[tc.want]; b.retrying.Load() != want {
			t.Errorf("%d active, %d retrying: %d retrying after, want %d", tc.active, tc.retrying, b.retrying.Load(), want)
		}
	}
}

// TestRetryBudget sends requests at once to a backend that fails each first try and
// holds each retry: only minRetryConcurrency retries go out, the other requests get the
// failed try's answer, and the refusals are counted.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	const n = 10
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]bool{}
	var held atomic.Int32
	backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		mu.Lock()
		retry := seen[id]
		seen[id] = true
		mu.Unlock()
		if !retry {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		held.Add(1)
		select {
		case <-release:
		case <-time.After(wait):
		}
		w.WriteHeader(http.StatusOK)
	}))
	r := prefixRoute("default/r/0/0", "/", backendOf(t, "flaky", backend))
	r.Retry = &ir.Retry{Codes: []int{503}, Attempts: 1}
	g := startGateway(t, Options{Metrics: NewMetrics(prometheus.NewRegistry())}, simpleConfig(r))
	c := newClient(t)
	codes := make(chan int, n)
	for range n {
		go func() {
			resp, err := c.Get(g.URL + "/")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	count := map[int]int{}
	for range n - minRetryConcurrency {
		select {
		case code := <-codes:
			count[code]++
		case <-time.After(wait):
			t.Fatalf("only %v answered before the held retries were released", count)
		}
	}
	if count[503] != n-minRetryConcurrency {
		t.Fatalf("before the release: answers %v, want %d × 503", count, n-minRetryConcurrency)
	}
	eventually(t, "the granted retries to reach the backend", func() bool { return held.Load() == minRetryConcurrency })
	close(release)
	for range minRetryConcurrency {
		select {
		case code := <-codes:
			count[code]++
		case <-time.After(wait):
			t.Fatal("a released retry did not answer")
		}
	}
	if count[200] != minRetryConcurrency {
		t.Errorf("answers %v, want %d × 200 after the release", count, minRetryConcurrency)
	}
	var m dto.Metric
	if err := g.metrics.retryOverflows.WithLabelValues("default/r/0/0", "flaky").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != n-minRetryConcurrency {
		t.Errorf("sluice_upstream_retry_overflow_total %v, want %d", got, n-minRetryConcurrency)
	}
}

// A client body that breaks (a malformed chunk) on a route that retries is the client's
// fault: 400, not an upstream error, and not retried.
func TestRetryBrokenClientBody(t *testing.T) {
	t.Parallel()
	f := &flaky{mode: "500"}
	r := prefixRoute("r", "/", backendOf(t, "flaky", newBackend(t, f)))
	r.Retry = &ir.Retry{Codes: []int{500}, Attempts: 2}
	g := startGateway(t, Options{}, simpleConfig(r))
	resp := rawRequest(t, g, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if n := f.tries.Load(); n > 1 {
		t.Errorf("the backend was tried %d times, want at most once", n)
	}
}

// The same without a retry policy: the broken body is the client's fault, 400.
func TestBrokenClientBody(t *testing.T) {
	t.Parallel()
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "echo", echoBackend(t, "echo")))))
	resp := rawRequest(t, g, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
}
