package extproc

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

// Families 1 and 2: the processor closes cleanly (continue) or fails the stream (500, or
// continue when fail-open), on the request and on the response side.
func TestStreamEnds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		at       string // the message kind at which the processor acts
		act      *extprocv3.ProcessingResponse
		open     bool
		want     int
		wantUp   bool
		wantKind string
	}{
		{"clean close before first answer", "request_headers", closeOK, false, 200, true, ""},
		{"clean close after first answer", "response_headers", closeOK, false, 200, true, ""},
		{"error on request", "request_headers", failRPC, false, 500, false, "stream_error"},
		{"error on request fail-open", "request_headers", failRPC, true, 200, true, "stream_error"},
		{"error on response", "response_headers", failRPC, false, 500, true, "stream_error"},
		{"error on response fail-open", "response_headers", failRPC, true, 200, true, "stream_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if kindOf(m) == tc.at {
					return tc.act
				}
				return nil
			}))
			s := spec()
			if tc.open {
				failOpen(s)
			}
			g := newGateway(t, s, p)
			res := g.do("GET", "/", nil)
			if res.Status != tc.want {
				t.Fatalf("status %d, want %d (%s)", res.Status, tc.want, res.Header.Get("X-Local-Reply"))
			}
			if tc.want == 200 && res.Body != "upstream says hi" {
				t.Errorf("body %q", res.Body)
			}
			if tc.wantUp {
				g.up.seen(t)
			} else {
				g.up.none(t)
			}
			g.exchange()
			if tc.wantKind != "" {
				if n := counterValue(g.pool.opts.Metrics.errors.WithLabelValues("test/proc", tc.wantKind)); n != 1 {
					t.Errorf("errors{%s} = %v", tc.wantKind, n)
				}
			}
			if tc.open && tc.act == failRPC {
				if n := counterValue(g.pool.opts.Metrics.failOpen.WithLabelValues("test/proc")); n != 1 {
					t.Errorf("fail_open = %v", n)
				}
			}
		})
	}
}

// Family 3: processor unreachable.
func TestProcessorDown(t *testing.T) {
	t.Parallel()
	for _, open := range []bool{false, true} {
		t.Run(map[bool]string{false: "fail-closed", true: "fail-open"}[open], func(t *testing.T) {
			t.Parallel()
			p := newProc(t, echo)
			p.srv.Stop()
			s := spec()
			if open {
				failOpen(s)
			}
			g := newGateway(t, s, p)
			res := g.do("GET", "/", nil)
			want := 500
			if open {
				want = 200
			}
			if res.Status != want {
				t.Fatalf("status %d, want %d", res.Status, want)
			}
			g.exchange()
			if n := counterValue(g.pool.opts.Metrics.errors.WithLabelValues("test/proc", "unavailable")); n != 1 {
				t.Errorf("unavailable errors = %v", n)
			}
		})
	}
}

// Family 4: graceful close (half-close, the processor returns) versus a reset (after a
// local reply the stream is not waited for).
func TestGracefulVsResetClose(t *testing.T) {
	t.Parallel()
	p := newProc(t, echo)
	g := newGateway(t, spec(), p)
	if res := g.do("GET", "/", nil); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g.exchange()
	if e := p.end(t); !e.sawEOF || e.canceled {
		t.Errorf("header-only exchange ended %+v, want graceful", e)
	}

	// A processor that never returns on its own is reset once the grace is over.
	p2 := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		for {
			m, err := s.Recv()
			if err != nil {
				<-s.Context().Done()
				return nil
			}
			_ = s.Send(empty(m))
		}
	})
	g2 := newGateway(t, spec(), p2)
	if res := g2.do("GET", "/", nil); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g2.exchange()
	if e := p2.end(t); !e.canceled {
		t.Errorf("stream end %+v, want reset after grace", e)
	}
}

// Family 18 and 36: message timeouts answer 504 (status_on_error does not apply); fail-open
// continues; a client that disconnects while waiting cancels the stream at once.
func TestMessageTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		at   string
		open bool
		want int
	}{
		{"request", "request_headers", false, 504},
		{"response", "response_headers", false, 504},
		{"request fail-open", "request_headers", true, 200},
		{"response fail-open", "response_headers", true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if kindOf(m) == tc.at {
					return hang
				}
				return nil
			}))
			s := spec(timeout(50*time.Millisecond), statusOnError(503))
			if tc.open {
				failOpen(s)
			}
			g := newGateway(t, s, p)
			start := time.Now()
			res := g.do("GET", "/", nil)
			if res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			if el := time.Since(start); el < 50*time.Millisecond || el > 2*time.Second {
				t.Errorf("took %v", el)
			}
			if tc.want == 504 && res.Header.Get("X-Local-Reply") != "ext_proc_error_per-message_timeout_exceeded" {
				t.Errorf("details %q", res.Header.Get("X-Local-Reply"))
			}
			g.exchange()
			if e := p.end(t); !e.canceled {
				t.Errorf("timed-out stream must be reset, got %+v", e)
			}
		})
	}
}

func TestZeroTimeoutFiresAtOnce(t *testing.T) {
	t.Parallel()
	p := newProc(t, echo)
	g := newGateway(t, spec(timeout(0)), p)
	if res := g.do("GET", "/", nil); res.Status != 504 {
		t.Fatalf("status %d, want 504", res.Status)
	}
	g.exchange()
}

func TestClientDisconnectCancelsStream(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return hang }))
	g := newGateway(t, spec(timeout(10*time.Second)), p)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", g.srv.URL+"/", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := g.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	// Wait until the processor holds the request, then hang up.
	deadline := time.After(waitFor)
	for len(p.received()) == 0 {
		select {
		case <-deadline:
			t.Fatal("processor got nothing")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	start := time.Now()
	if e := p.end(t); !e.canceled {
		t.Errorf("stream end %+v", e)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("stream cancelled after %v", el)
	}
	<-errc
	g.exchange()
	g.up.none(t)
}

// Spurious answers (3.2): wrong kind, empty message; fail-closed → status_on_error,
// fail-open → continue.
func TestSpuriousAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ans  *extprocv3.ProcessingResponse
		open bool
		want int
	}{
		{"wrong kind", respHeadersAns(nil), false, 500},
		{"wrong kind fail-open", respHeadersAns(nil), true, 200},
		{"empty message", &extprocv3.ProcessingResponse{}, false, 500},
		{"body answer to headers", reqBodyAns(nil), false, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetRequestHeaders() != nil {
					// A copy: the sentinel pointers must not match.
					return cloneAnswer(tc.ans)
				}
				return nil
			}))
			s := spec()
			if tc.open {
				failOpen(s)
			}
			g := newGateway(t, s, p)
			res := g.do("GET", "/", nil)
			if res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			g.exchange()
			if n := counterValue(g.pool.opts.Metrics.errors.WithLabelValues("test/proc", "spurious")); n != 1 {
				t.Errorf("spurious = %v", n)
			}
		})
	}
}

// Family 35: an answer over the gRPC receive limit fails the request.
func TestAnswerTooLarge(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 64<<10)
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return reqHeadersAns(common(hm(nil, set("x-big", big)), nil))
		}
		return nil
	}))
	g := newGateway(t, spec(), p, withPool(PoolOptions{MaxRecvMsgSize: 16 << 10}))
	if res := g.do("GET", "/", nil); res.Status != 500 {
		t.Fatalf("status %d, want 500", res.Status)
	}
	g.exchange()
	g.up.none(t)
	if n := counterValue(g.pool.opts.Metrics.errors.WithLabelValues("test/proc", "too_large")); n != 1 {
		t.Errorf("too_large = %v", n)
	}
}

// Family 36: status_on_error applies to errors, not to timeouts.
func TestStatusOnError(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return failRPC }))
	g := newGateway(t, spec(statusOnError(503)), p)
	if res := g.do("GET", "/", nil); res.Status != 503 {
		t.Fatalf("status %d, want 503", res.Status)
	}
	g.exchange()
}

// A processor killed mid-stream (its server stops) fails the request.
func TestProcessorKilledMidStream(t *testing.T) {
	t.Parallel()
	var srv *grpc.Server
	stopped := make(chan struct{})
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		_ = s.Send(empty(m))
		go func() { srv.Stop(); close(stopped) }()
		<-s.Context().Done()
		return nil
	})
	srv = p.srv
	g := newGateway(t, spec(), p)
	res := g.do("GET", "/", nil)
	<-stopped
	if res.Status != 500 {
		t.Fatalf("status %d, want 500", res.Status)
	}
	g.exchange()
}

// Failures in the middle of a streamed body: on the request path fail-closed answers
// status_on_error and fail-open passes the rest through; on the response path (headers
// already sent) the client's stream is reset, or the rest passes when fail-open.
func TestStreamedBodyFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		at        string
		open      bool
		wantReset bool
		want      int
		wantUp    string
		wantBody  string
	}{
		{"request fail-closed", "request_body", false, false, 500, "", ""},
		{"request fail-open", "request_body", true, false, 200, "aabbcc", "upstream says hi"},
		{"response fail-closed", "response_body", false, true, 0, "AABBCC", ""},
		{"response fail-open", "response_body", true, false, 200, "AABBCC", "upstream says hi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if kindOf(m) == tc.at {
					return failRPC
				}
				return upper(m)
			}))
			s := spec(bodies(streamed, streamed))
			if tc.open {
				failOpen(s)
			}
			g := newGateway(t, s, p)
			res := g.do("POST", "/", chunked("aa", "bb", "cc"))
			if tc.wantReset {
				if res.Err == nil {
					t.Fatalf("want a reset, got %d %q", res.Status, res.Body)
				}
			} else if res.Status != tc.want || (tc.wantBody != "" && res.Body != tc.wantBody) {
				t.Fatalf("client got %d %q", res.Status, res.Body)
			}
			if tc.wantUp != "" {
				if up := g.up.seen(t); up.Body != tc.wantUp {
					t.Errorf("upstream got %q, want %q", up.Body, tc.wantUp)
				}
			}
			g.exchange()
		})
	}
}

// Debug logs carry every message with the configured headers redacted.
func TestDebugLogRedacts(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	p := newProc(t, echo)
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g := newGateway(t, spec(), p, withPool(PoolOptions{Logger: log}))
	if res := g.do("GET", "/", nil, "Authorization", "Bearer secret-token", "Cookie", "c=secret-cookie", "X-Visible", "shown"); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g.exchange()
	out := buf.String()
	if strings.Contains(out, "secret-token") || strings.Contains(out, "secret-cookie") {
		t.Errorf("secrets logged:\n%s", out)
	}
	if !strings.Contains(out, "shown") || !strings.Contains(out, "redacted") {
		t.Errorf("log lacks the message:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
