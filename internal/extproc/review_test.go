package extproc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// A full-duplex processor that sends its last answers and ends the stream (OK) at once:
// the answers sent before the end of the stream are the response, never an error.
func TestFullDuplexAnswersBeforeCleanClose(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		var buf []byte
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			b := m.GetResponseBody()
			if b == nil {
				if err := s.Send(empty(m)); err != nil {
					return nil
				}
				continue
			}
			buf = append(buf, b.GetBody()...)
			if !b.GetEndOfStream() {
				continue
			}
			for i, part := range split3(bytes.ToUpper(buf)) {
				if err := s.Send(respBodyAns(streamedChunk(part, i == 2))); err != nil {
					return nil
				}
			}
			return nil // done with this request: end the stream at once
		}
	})
	g := newGateway(t, spec(bodies(none, duplex), trailers(v1alpha1.Skip, v1alpha1.Send)), p)
	for i := range 40 {
		res := g.do("GET", "/", nil)
		if res.Status != 200 || res.Body != "UPSTREAM SAYS HI" || res.Err != nil {
			t.Fatalf("request %d: client got %d %q %v", i, res.Status, res.Body, res.Err)
		}
		g.up.seen(t)
		g.exchange()
	}
}

// With the body sent before the headers answer (an asynchronous stream), a headers answer
// followed at once by a clean end of the stream still applies.
func TestEarlyBodyAnswerBeforeCleanClose(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			if m.GetRequestHeaders() != nil {
				_ = s.Send(reqHeadersAns(common(hm(nil, set("x-early", "1")), nil)))
				return nil
			}
		}
	})
	s := spec(bodies(streamed, none))
	s.SendBodyWithoutWaitingForHeaderResponse = true
	g := newGateway(t, s, p)
	for i := range 40 {
		res := g.do("POST", "/", chunked("ab", "cd"))
		if res.Status != 200 {
			t.Fatalf("request %d: status %d (%s)", i, res.Status, res.Header.Get("X-Local-Reply"))
		}
		if up := g.up.seen(t); up.Body != "abcd" || up.Header.Get("X-Early") != "1" {
			t.Fatalf("request %d: upstream saw %q %v", i, up.Body, up.Header)
		}
		g.exchange()
	}
}

// override_message_timeout on an asynchronous stream (body sent before the headers
// answer) extends the wait, and the wait still ends: 504 once the new timeout passes.
func TestEarlyBodyOverrideMessageTimeout(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			if m.GetRequestHeaders() != nil {
				_ = s.Send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(300 * time.Millisecond)})
				<-s.Context().Done()
				return nil
			}
		}
	})
	s := spec(bodies(streamed, none), timeout(100*time.Millisecond))
	s.MaxMessageTimeout = &metav1.Duration{Duration: time.Second}
	s.SendBodyWithoutWaitingForHeaderResponse = true
	g := newGateway(t, s, p)
	start := time.Now()
	res := g.do("POST", "/", chunked("ab", "cd"))
	if res.Status != 504 {
		t.Fatalf("status %d (%v), want 504", res.Status, res.Err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("504 after %v, want about 300ms", d)
	}
	g.up.none(t)
	g.exchange()
}

// messageTimeout 0s fires at once on an asynchronous stream too.
func TestEarlyBodyZeroTimeout(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return hang }))
	s := spec(bodies(streamed, none), timeout(0))
	s.SendBodyWithoutWaitingForHeaderResponse = true
	g := newGateway(t, s, p)
	if res := g.do("POST", "/", chunked("ab", "cd")); res.Status != 504 {
		t.Fatalf("status %d (%v), want 504", res.Status, res.Err)
	}
	g.exchange()
}

// slowParts returns one part per Read, pausing before each part but the first.
type slowParts struct {
	parts []string
	pause time.Duration
	n     int
}

func (r *slowParts) Read(p []byte) (int, error) {
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	if r.n > 0 {
		time.Sleep(r.pause)
	}
	r.n++
	n := copy(p, r.parts[0])
	r.parts = r.parts[1:]
	return n, nil
}

// With the body sent before the headers answer, a CONTINUE_AND_REPLACE headers answer
// replaces the body while the client is still sending it: the rest of the exchange
// (response headers) goes on with the processor.
func TestEarlyBodyReplacedByHeadersAnswer(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			cr := common(nil, []byte("replaced"))
			cr.Status = extprocv3.CommonResponse_CONTINUE_AND_REPLACE
			return reqHeadersAns(cr)
		}
		if m.GetResponseHeaders() != nil {
			return respHeadersAns(common(hm(nil, set("x-resp", "1")), nil))
		}
		return nil
	}))
	s := spec(bodies(streamed, none))
	s.SendBodyWithoutWaitingForHeaderResponse = true
	g := newGateway(t, s, p)
	res := g.do("POST", "/", &slowParts{parts: []string{"ab", "cd", "ef"}, pause: 100 * time.Millisecond})
	if res.Status != 200 || res.Header.Get("X-Resp") != "1" {
		t.Fatalf("client got %d %v (%s)", res.Status, res.Header, res.Header.Get("X-Local-Reply"))
	}
	if up := g.up.seen(t); up.Body != "replaced" {
		t.Errorf("upstream saw %q", up.Body)
	}
	g.exchange()
}

// CONTINUE_AND_REPLACE without a body_mutation replaces nothing but the headers, as in
// Envoy: the body goes on unprocessed (and keeps its length); nothing more of it goes to
// the processor.
func TestContinueAndReplaceWithoutBody(t *testing.T) {
	t.Parallel()
	for _, early := range []bool{false, true} {
		t.Run(map[bool]string{false: "held", true: "early"}[early], func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetRequestHeaders() != nil {
					cr := common(hm(nil, set("x-replaced", "1")), nil)
					cr.Status = extprocv3.CommonResponse_CONTINUE_AND_REPLACE
					return reqHeadersAns(cr)
				}
				if m.GetResponseHeaders() != nil {
					cr := common(hm(nil, set("x-resp", "1")), nil)
					cr.Status = extprocv3.CommonResponse_CONTINUE_AND_REPLACE
					return respHeadersAns(cr)
				}
				return nil
			}))
			s := spec(bodies(streamed, streamed))
			s.SendBodyWithoutWaitingForHeaderResponse = early
			g := newGateway(t, s, p)
			res := g.do("POST", "/", &slowParts{parts: []string{"ab", "cd"}, pause: 50 * time.Millisecond})
			if res.Status != 200 || res.Body != "upstream says hi" || res.Header.Get("X-Resp") != "1" {
				t.Fatalf("client got %d %q %v", res.Status, res.Body, res.Header)
			}
			if up := g.up.seen(t); up.Body != "abcd" || up.Header.Get("X-Replaced") != "1" {
				t.Errorf("upstream saw %q %v", up.Body, up.Header)
			}
			g.exchange()
			if !early {
				if k := fmt.Sprint(p.kinds()); k != "[request_headers response_headers]" {
					t.Errorf("processor got %s", k)
				}
			}
		})
	}
}

// FULL_DUPLEX_STREAMED: a body answer for the direction that is not streaming (a
// response_body chunk while the request body is under way) is out of turn: 500, as in
// Envoy, not data spliced into the response later.
func TestFullDuplexAnswerOfTheOtherDirection(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		wrong := true
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			if m.GetRequestBody() != nil && wrong {
				wrong = false
				if err := s.Send(respBodyAns(streamedChunk([]byte("injected"), false))); err != nil {
					return nil
				}
			}
			a := duplexEcho(m)
			if a == nil {
				a = empty(m)
			}
			if err := s.Send(a); err != nil {
				return nil
			}
		}
	})
	g := newGateway(t, spec(bodies(duplex, duplex), trailers(v1alpha1.Send, v1alpha1.Send)), p)
	res := g.do("POST", "/", chunked("ab", "cd"))
	if res.Status != 500 {
		t.Fatalf("client got %d %q, want 500", res.Status, res.Body)
	}
	g.exchange()
}

// A full-duplex request body beside a Streamed and a Buffered response body on the same
// (asynchronous) stream: each response body answer is awaited and applied.
func TestFullDuplexRequestWithOtherResponseModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []v1alpha1.BodySendMode{streamed, buffered} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetRequestBody() != nil {
					return duplexEcho(m)
				}
				return upper(m)
			}))
			g := newGateway(t, spec(bodies(duplex, mode), trailers(v1alpha1.Send, v1alpha1.Skip)), p)
			for i := range 20 {
				res := g.do("POST", "/", chunked("ab", "cd"))
				if res.Status != 200 || res.Body != "UPSTREAM SAYS HI" {
					t.Fatalf("request %d: client got %d %q (%s)", i, res.Status, res.Body, res.Header.Get("X-Local-Reply"))
				}
				if up := g.up.seen(t); up.Body != "abcd" {
					t.Errorf("upstream saw %q", up.Body)
				}
				g.exchange()
			}
		})
	}
}

// Observability mode: a processor that stops reading its stream cannot hold the request
// up (messages are sent without waiting); the observation is what gives.
func TestObservabilityStuckProcessor(t *testing.T) {
	t.Parallel()
	p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
		<-s.Context().Done() // never reads
		return nil
	})
	s := spec(bodies(streamed, streamed))
	s.ObservabilityMode = true
	big := strings.Repeat("x", 4<<20)
	g := newGateway(t, s, p, withPool(PoolOptions{DeferredCloseTimeout: 200 * time.Millisecond}),
		withUpstream(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, big) }))
	done := make(chan result, 1)
	go func() { done <- g.do("POST", "/", strings.NewReader(big)) }()
	select {
	case res := <-done:
		if res.Status != 200 || len(res.Body) != len(big) {
			t.Fatalf("client got %d, %d bytes (%v)", res.Status, len(res.Body), res.Err)
		}
	case <-time.After(3 * time.Second):
		_ = g.pool.Close() // unblock, so that the test can end
		t.Fatal("the request waited for a processor that does not read")
	}
	if up := g.up.seen(t); len(up.Body) != len(big) {
		t.Errorf("upstream got %d bytes", len(up.Body))
	}
	g.exchange()
}
