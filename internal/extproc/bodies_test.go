package extproc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

const (
	none     = v1alpha1.BodyNone
	streamed = v1alpha1.BodyStreamed
	buffered = v1alpha1.BodyBuffered
	partial  = v1alpha1.BodyBufferedPartial
	duplex   = v1alpha1.BodyFullDuplexStreamed
)

// upper answers body messages with their upper-cased body.
func upper(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if b := m.GetRequestBody(); b != nil {
		return reqBodyAns(common(nil, bytes.ToUpper(b.GetBody())))
	}
	if b := m.GetResponseBody(); b != nil {
		return respBodyAns(common(nil, bytes.ToUpper(b.GetBody())))
	}
	return nil
}

// Family 10: BUFFERED body mutation with a header mutation in the body answer, request
// and response; Content-Length fixed by the processor.
func TestBufferedBodyMutation(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if b := m.GetRequestBody(); b != nil {
			nb := []byte("request:" + string(b.GetBody()))
			return reqBodyAns(common(hm(nil, set("x-req-body-seen", "1"), set("content-length", fmt.Sprint(len(nb)))), nb))
		}
		if b := m.GetResponseBody(); b != nil {
			nb := []byte("response:" + string(b.GetBody()))
			return respBodyAns(common(hm(nil, set("x-resp-body-seen", "1"), set("content-length", fmt.Sprint(len(nb)))), nb))
		}
		return nil
	}))
	g := newGateway(t, spec(bodies(buffered, buffered)), p)
	res := g.do("POST", "/", strings.NewReader("abc"))
	if res.Status != 200 || res.Body != "response:upstream says hi" || res.Header.Get("X-Resp-Body-Seen") != "1" {
		t.Fatalf("client got %+v", res)
	}
	up := g.up.seen(t)
	if up.Body != "request:abc" || up.Header.Get("X-Req-Body-Seen") != "1" || up.ContentLength != int64(len("request:abc")) {
		t.Errorf("upstream saw %+v", up)
	}
	g.exchange()
	want := []string{"request_headers", "request_body", "response_headers", "response_body"}
	if got := p.kinds(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("processor got %v, want %v", got, want)
	}
	if b := p.received()[1].GetRequestBody(); string(b.GetBody()) != "abc" || !b.GetEndOfStream() {
		t.Errorf("body message %v", b)
	}
}

// Family 13: a body changed without fixing Content-Length (headers sent) fails.
func TestContentLengthMismatch(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(upper2x))
	g := newGateway(t, spec(bodies(buffered, none)), p)
	if res := g.do("POST", "/", strings.NewReader("abc")); res.Status != 500 {
		t.Fatalf("status %d, want 500", res.Status)
	}
	g.up.none(t)
	g.exchange()
}

func upper2x(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if b := m.GetRequestBody(); b != nil {
		return reqBodyAns(common(nil, bytes.Repeat(b.GetBody(), 2)))
	}
	return nil
}

// Family 12 (and 3.6): Content-Length per mode, chunked on HTTP/1 when the body may change.
func TestContentLengthPerMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		mod         []func(*v1alpha1.ExtProc)
		wantChunked bool
	}{
		{"none", nil, false},
		{"buffered headers send", []func(*v1alpha1.ExtProc){bodies(buffered, buffered)}, false},
		{"buffered headers skip", []func(*v1alpha1.ExtProc){bodies(buffered, buffered), headers(v1alpha1.Skip, v1alpha1.Skip)}, true},
		{"streamed", []func(*v1alpha1.ExtProc){bodies(streamed, streamed)}, true},
		{"partial", []func(*v1alpha1.ExtProc){bodies(partial, partial)}, true},
		{"duplex", []func(*v1alpha1.ExtProc){bodies(duplex, duplex), trailers(v1alpha1.Send, v1alpha1.Send)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := echo
			if tc.name == "duplex" {
				h = answerWith(duplexEcho)
			}
			p := newProc(t, h)
			g := newGateway(t, spec(tc.mod...), p)
			res := g.do("POST", "/", strings.NewReader("hello"))
			if res.Status != 200 || res.Body != "upstream says hi" {
				t.Fatalf("client got %d %q (%s)", res.Status, res.Body, res.Header.Get("X-Local-Reply"))
			}
			up := g.up.seen(t)
			if up.Body != "hello" || up.Chunked != tc.wantChunked {
				t.Errorf("upstream saw body %q chunked=%v cl=%d, want chunked=%v", up.Body, up.Chunked, up.ContentLength, tc.wantChunked)
			}
			if cl := res.Header.Get("Content-Length"); (cl == "") != tc.wantChunked {
				t.Errorf("client content-length %q, chunked want %v", cl, tc.wantChunked)
			}
			g.exchange()
		})
	}
}

// duplexEcho answers like echo, but body messages in full-duplex form (streamed_response
// with the same bytes), as a processor in FULL_DUPLEX_STREAMED mode must.
func duplexEcho(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if b := m.GetRequestBody(); b != nil {
		return reqBodyAns(streamedChunk(b.GetBody(), b.GetEndOfStream()))
	}
	if b := m.GetResponseBody(); b != nil {
		return respBodyAns(streamedChunk(b.GetBody(), b.GetEndOfStream()))
	}
	return nil
}

func streamedChunk(b []byte, eos bool) *extprocv3.CommonResponse {
	return &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
		StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b, EndOfStream: eos}}}}
}

// Family 34: BUFFERED over the limit: 413 on the request, 500 on the response.
func TestBufferedOverLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		req    bool
		body   io.Reader
		want   int
		upWant bool
	}{
		{"request known length", true, strings.NewReader(strings.Repeat("a", 100)), 413, false},
		{"request chunked", true, chunked(strings.Repeat("a", 60), strings.Repeat("b", 60)), 413, false},
		{"response", false, nil, 500, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, echo)
			mod := bodies(buffered, none)
			if !tc.req {
				mod = bodies(none, buffered)
			}
			g := newGateway(t, spec(mod, bufferSize(64)), p, withUpstream(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write(bytes.Repeat([]byte("z"), 100))
			}))
			method := "POST"
			if tc.body == nil {
				method = "GET"
			}
			res := g.do(method, "/", tc.body)
			if res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			if tc.upWant {
				g.up.seen(t)
			} else {
				g.up.none(t)
			}
			g.exchange()
		})
	}
}

// Family 11: BUFFERED_PARTIAL sends up to the limit with header changes; the rest
// streams past the processor.
func TestBufferedPartial(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if b := m.GetRequestBody(); b != nil {
			return reqBodyAns(common(hm(nil, set("x-partial", fmt.Sprintf("%d-%v", len(b.GetBody()), b.GetEndOfStream()))), bytes.ToUpper(b.GetBody())))
		}
		return nil
	}))
	g := newGateway(t, spec(bodies(partial, none), bufferSize(8)), p)
	res := g.do("POST", "/", strings.NewReader("abcdefghijkl"))
	if res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	up := g.up.seen(t)
	if up.Body != "ABCDEFGHijkl" || up.Header.Get("X-Partial") != "8-false" {
		t.Errorf("upstream saw %q %v", up.Body, up.Header)
	}
	g.exchange()
	// Under the limit it is a whole body with end_of_stream.
	res = g.do("POST", "/", strings.NewReader("abc"))
	if up := g.up.seen(t); res.Status != 200 || up.Body != "ABC" || up.Header.Get("X-Partial") != "3-true" {
		t.Errorf("small body: %d, upstream %q %v", res.Status, up.Body, up.Header)
	}
	g.exchange()
}

// Family 20: an empty body (chunked, no bytes) sends one empty body message with
// end_of_stream; no body (GET) sends none.
func TestEmptyVersusNoBody(t *testing.T) {
	t.Parallel()
	for _, mode := range []v1alpha1.BodySendMode{streamed, buffered, partial} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			p := newProc(t, echo)
			g := newGateway(t, spec(bodies(mode, none)), p)
			if res := g.do("GET", "/", nil); res.Status != 200 {
				t.Fatalf("status %d", res.Status)
			}
			g.up.seen(t)
			g.exchange()
			if got := fmt.Sprint(p.kinds()); got != "[request_headers response_headers]" {
				t.Errorf("no body: processor got %s", got)
			}
			p.mu.Lock()
			p.got = nil
			p.mu.Unlock()
			if res := g.do("POST", "/", chunked()); res.Status != 200 {
				t.Fatalf("status %d", res.Status)
			}
			g.up.seen(t)
			g.exchange()
			got := p.received()
			if len(got) != 3 || kindOf(got[1]) != "request_body" || len(got[1].GetRequestBody().GetBody()) != 0 || !got[1].GetRequestBody().GetEndOfStream() {
				t.Errorf("empty body: processor got %v", p.kinds())
			}
			if got[0].GetRequestHeaders().GetEndOfStream() {
				t.Error("headers of a chunked body must not end the stream")
			}
		})
	}
}

// STREAMED (3.8): chunks in order, one answer each, changed chunks go on.
func TestStreamedBodies(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(upper))
	g := newGateway(t, spec(bodies(streamed, streamed)), p, withUpstream(func(w http.ResponseWriter, r *http.Request) {
		for _, part := range []string{"one ", "two ", "three"} {
			_, _ = io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}))
	res := g.do("POST", "/", chunked("ab", "cd", "ef"))
	if res.Status != 200 || res.Body != "ONE TWO THREE" {
		t.Fatalf("client got %d %q", res.Status, res.Body)
	}
	if up := g.up.seen(t); up.Body != "ABCDEF" {
		t.Errorf("upstream saw %q", up.Body)
	}
	g.exchange()
	var last *extprocv3.HttpBody
	for _, m := range p.received() {
		if b := m.GetRequestBody(); b != nil {
			last = b
		}
	}
	if last == nil || !last.GetEndOfStream() {
		t.Errorf("last request body message %v", last)
	}
}
