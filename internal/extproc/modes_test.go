package extproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// Family 29: observability mode: everything is sent, nothing waits, answers (mutations,
// immediate responses, metadata) are ignored, and the stream closes after the deferred
// timeout at the latest.
func TestObservabilityMode(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		for {
			m, err := s.Recv()
			if err != nil {
				// Never returns on EOF: only the deferred close ends the stream.
				<-s.Context().Done()
				return nil
			}
			time.Sleep(100 * time.Millisecond) // slower than the message timeout
			a := immediate(403, "no", nil)
			if m.GetRequestHeaders() != nil {
				a = reqHeadersAns(common(hm(nil, set("x-observer", "1")), nil))
			}
			_ = s.Send(a)
		}
	})
	s := spec(bodies(streamed, streamed), trailers(v1alpha1.Send, v1alpha1.Send), timeout(10*time.Millisecond))
	s.ObservabilityMode = true
	g := newGateway(t, s, p, withPool(PoolOptions{DeferredCloseTimeout: 300 * time.Millisecond}), withUpstream(trailerUpstream))
	start := time.Now()
	res := g.send(requestWithTrailers(g, true))
	if res.Status != 200 || res.Body != "body" || res.Trailer.Get("X-Up-Trailer") != "up" {
		t.Fatalf("client got %+v", res)
	}
	if el := time.Since(start); el > 90*time.Millisecond {
		t.Errorf("observability waited %v", el)
	}
	up := g.up.seen(t)
	if up.Header.Get("X-Observer") != "" || up.Body != "abcd" {
		t.Errorf("upstream saw %v %q", up.Header, up.Body)
	}
	ex := g.exchange()
	if len(ex.Metadata()) != 0 {
		t.Errorf("metadata %v", ex.Metadata())
	}
	e := p.end(t)
	if !e.canceled || time.Since(start) < 250*time.Millisecond {
		t.Errorf("stream ended %+v after %v", e, time.Since(start))
	}
	want := "[request_headers request_body request_body request_trailers response_headers response_body response_trailers]"
	got := p.received()
	if fmt.Sprint(p.kinds()) != want && !strings.HasPrefix(fmt.Sprint(p.kinds()), "[request_headers request_body") {
		t.Errorf("processor got %v", p.kinds())
	}
	for _, m := range got {
		if !m.GetObservabilityMode() {
			t.Error("observability_mode not set")
		}
	}
}

// An observability stream still open when the pool closes is ended by Close.
func TestObservabilityClosedByPool(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		<-s.Context().Done()
		return nil
	})
	s := spec()
	s.ObservabilityMode = true
	g := newGateway(t, s, p, withPool(PoolOptions{DeferredCloseTimeout: time.Hour}))
	if res := g.do("GET", "/", nil); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g.exchange()
	_ = g.pool.Close()
	if e := p.end(t); !e.canceled {
		t.Errorf("end %+v", e)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return nil }

// Family 30: a slow processor applies back-pressure in both directions: the source is
// read at most one chunk ahead of what the processor answered.
func TestStreamedBackPressure(t *testing.T) {
	t.Parallel()
	var answered atomic.Int64
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if b := m.GetRequestBody(); b != nil {
			time.Sleep(2 * time.Millisecond)
			answered.Add(int64(len(b.GetBody())))
		}
		if b := m.GetResponseBody(); b != nil {
			time.Sleep(2 * time.Millisecond)
			answered.Add(int64(len(b.GetBody())))
		}
		return nil
	}))
	pool := NewPool(PoolOptions{})
	defer pool.Close()
	fac, err := pool.Build(&ir.ExtProc{Policy: "t/bp", Backend: backendOf(p), Spec: spec(bodies(streamed, streamed))})
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	for _, dir := range []string{"request", "response"} {
		answered.Store(0)
		src := &countingReader{r: bytes.NewReader(make([]byte, size))}
		req := httptest.NewRequest("POST", "/", nil)
		ex := &filter.Exchange{Request: req, Scheme: "http"}
		inst := fac.Start(ex)
		var body io.ReadCloser
		if dir == "request" {
			req.Body, req.ContentLength = src, size
			if lr := inst.Request(context.Background(), ex); lr != nil {
				t.Fatal(lr)
			}
			body = req.Body
		} else {
			if lr := inst.Request(context.Background(), ex); lr != nil {
				t.Fatal(lr)
			}
			resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: src, ContentLength: size, Request: req}
			if lr := inst.Response(context.Background(), ex, resp); lr != nil {
				t.Fatal(lr)
			}
			body = resp.Body
		}
		buf := make([]byte, 1024)
		total := 0
		for {
			n, err := body.Read(buf)
			total += n
			if ahead := src.n.Load() - answered.Load(); ahead > streamChunk {
				t.Fatalf("%s: source read %d bytes ahead of the processor", dir, ahead)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		inst.Done(nil)
		if total != size {
			t.Errorf("%s: read %d of %d", dir, total, size)
		}
	}
}

// Family 31: body chunks sent before the headers answer need
// send_body_without_waiting_for_header_response, which protocol_config announces once.
func TestProtocolConfigOnce(t *testing.T) {
	t.Parallel()
	p := newProc(t, echo)
	s := spec(bodies(streamed, buffered))
	s.SendBodyWithoutWaitingForHeaderResponse = true
	g := newGateway(t, s, p)
	if res := g.do("POST", "/", strings.NewReader("x")); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g.exchange()
	n := 0
	for _, m := range p.received() {
		if pc := m.GetProtocolConfig(); pc != nil {
			n++
			if pc.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_STREAMED || pc.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED || !pc.GetSendBodyWithoutWaitingForHeaderResponse() {
				t.Errorf("protocol_config %v", pc)
			}
		}
	}
	if n != 1 {
		t.Errorf("protocol_config sent %d times", n)
	}
}

// collectThenSplit is a full-duplex processor that answers M:N: it gathers each
// direction's body and, at its end, answers with the body in three chunks (upper-cased).
func collectThenSplit(s extprocv3.ExternalProcessor_ProcessServer) error {
	var reqBuf, respBuf []byte
	for {
		m, err := s.Recv()
		if err != nil {
			return nil
		}
		var out []*extprocv3.ProcessingResponse
		switch {
		case m.GetRequestBody() != nil:
			reqBuf = append(reqBuf, m.GetRequestBody().GetBody()...)
			if m.GetRequestBody().GetEndOfStream() {
				for i, part := range split3(bytes.ToUpper(reqBuf)) {
					out = append(out, reqBodyAns(streamedChunk(part, i == 2)))
				}
			}
		case m.GetResponseBody() != nil:
			respBuf = append(respBuf, m.GetResponseBody().GetBody()...)
			if m.GetResponseBody().GetEndOfStream() {
				for i, part := range split3(bytes.ToUpper(respBuf)) {
					out = append(out, respBodyAns(streamedChunk(part, i == 2)))
				}
			}
		default:
			out = append(out, empty(m))
		}
		for _, a := range out {
			if err := s.Send(a); err != nil {
				return nil
			}
		}
	}
}

func split3(b []byte) [][]byte {
	n := len(b) / 3
	return [][]byte{b[:n], b[n : 2*n], b[2*n:]}
}

// Family 32: FULL_DUPLEX_STREAMED.
func TestFullDuplex(t *testing.T) {
	t.Parallel()
	fd := func(s *v1alpha1.ExtProc) {
		bodies(duplex, duplex)(s)
		trailers(v1alpha1.Send, v1alpha1.Send)(s)
	}
	t.Run("M:N chunks both ways, large bodies", func(t *testing.T) {
		t.Parallel()
		p := newProc(t, collectThenSplit)
		big := strings.Repeat("abcdefgh", 1<<17) // 1 MiB
		g := newGateway(t, spec(fd), p, withUpstream(func(w http.ResponseWriter, r *http.Request) {
			for range 4 {
				_, _ = io.WriteString(w, big)
			}
		}))
		parts := make([]string, 8)
		for i := range parts {
			parts[i] = big
		}
		res := g.do("POST", "/", chunked(parts...))
		if res.Status != 200 || len(res.Body) != 4*len(big) || res.Body[:8] != "ABCDEFGH" {
			t.Fatalf("client got %d, %d bytes", res.Status, len(res.Body))
		}
		if up := g.up.seen(t); len(up.Body) != 8*len(big) || up.Body[:8] != "ABCDEFGH" {
			t.Errorf("upstream got %d bytes", len(up.Body))
		}
		g.exchange()
	})
	t.Run("non-streamed body answer", func(t *testing.T) {
		t.Parallel()
		p := newProc(t, echo)
		g := newGateway(t, spec(fd), p)
		if res := g.do("POST", "/", strings.NewReader("x")); res.Status != 500 {
			t.Fatalf("status %d, want 500", res.Status)
		}
		g.exchange()
	})
	t.Run("idle timeout", func(t *testing.T) {
		t.Parallel()
		p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			if m.GetRequestBody() != nil {
				return noAnswer
			}
			return nil
		}))
		g := newGateway(t, spec(fd), p, withPool(PoolOptions{IdleTimeout: 50 * time.Millisecond}))
		if res := g.do("POST", "/", strings.NewReader("x")); res.Status != 504 {
			t.Fatalf("status %d, want 504", res.Status)
		}
		g.exchange()
	})
	t.Run("override NONE to full duplex", func(t *testing.T) {
		t.Parallel()
		p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			a := empty(m)
			a.ModeOverride = &extprocfilterv3.ProcessingMode{RequestBodyMode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
				RequestTrailerMode: extprocfilterv3.ProcessingMode_SEND}
			if err := s.Send(a); err != nil {
				return nil
			}
			return collectThenSplit(s)
		})
		s := spec()
		opts(s).AllowModeOverride = true
		g := newGateway(t, s, p)
		if res := g.do("POST", "/", strings.NewReader("abcdef")); res.Status != 200 {
			t.Fatalf("status %d", res.Status)
		}
		if up := g.up.seen(t); up.Body != "ABCDEF" {
			t.Errorf("upstream got %q", up.Body)
		}
		g.exchange()
	})
	t.Run("two chained processors", func(t *testing.T) {
		t.Parallel()
		p1 := newProc(t, collectThenSplit)
		p2 := newProc(t, answerWith(duplexEcho))
		g := newGateway(t, spec(fd), p1)
		f2, err := g.pool.Build(&ir.ExtProc{Policy: "t/second", Backend: backendOf(p2), Spec: spec(fd)})
		if err != nil {
			t.Fatal(err)
		}
		g.fac = chain{g.fac, f2}
		if res := g.do("POST", "/", strings.NewReader("abcdef")); res.Status != 200 || res.Body != "UPSTREAM SAYS HI" {
			t.Fatalf("client got %d %q", res.Status, res.Body)
		}
		if up := g.up.seen(t); up.Body != "ABCDEF" {
			t.Errorf("upstream got %q", up.Body)
		}
		g.exchange()
	})
}

// Family 31: with send_body_without_waiting_for_header_response the body reaches the
// processor before it answers the headers, and the headers answer still applies.
func TestBodyBeforeHeadersAnswer(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		var pending []*extprocv3.ProcessingRequest
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			pending = append(pending, m)
			// Hold the headers answer until the whole request body has arrived.
			if b := m.GetRequestBody(); b != nil && b.GetEndOfStream() {
				for _, q := range pending {
					a := empty(q)
					if q.GetRequestHeaders() != nil {
						a = reqHeadersAns(common(hm(nil, set("x-early", "1")), nil))
					} else if qb := q.GetRequestBody(); qb != nil {
						a = reqBodyAns(common(nil, bytes.ToUpper(qb.GetBody())))
					}
					if err := s.Send(a); err != nil {
						return nil
					}
				}
				pending = nil
				continue
			}
			if m.GetRequestHeaders() == nil && m.GetRequestBody() == nil {
				if err := s.Send(empty(m)); err != nil {
					return nil
				}
				pending = nil
			}
		}
	})
	s := spec(bodies(streamed, none))
	s.SendBodyWithoutWaitingForHeaderResponse = true
	g := newGateway(t, s, p)
	res := g.do("POST", "/", chunked("ab", "cd"))
	if res.Status != 200 {
		t.Fatalf("status %d (%s)", res.Status, res.Header.Get("X-Local-Reply"))
	}
	up := g.up.seen(t)
	if up.Body != "ABCD" || up.Header.Get("X-Early") != "1" {
		t.Errorf("upstream saw %q %v", up.Body, up.Header)
	}
	g.exchange()
}

// An early body whose processor fails before answering the headers still reaches the
// upstream whole when fail-open.
func TestBodyBeforeHeadersFailOpen(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if b := m.GetRequestBody(); b != nil && b.GetEndOfStream() {
			return failRPC
		}
		return noAnswer
	}))
	s := spec(bodies(streamed, none), failOpen)
	s.SendBodyWithoutWaitingForHeaderResponse = true
	g := newGateway(t, s, p)
	res := g.do("POST", "/", chunked("ab", "cd"))
	if res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	if up := g.up.seen(t); up.Body != "abcd" {
		t.Errorf("upstream saw %q", up.Body)
	}
	g.exchange()
}
