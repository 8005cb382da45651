package extproc

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// trailerUpstream answers with a body and, when the request asks, a trailer.
func trailerUpstream(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Want-Trailers") != "" {
		w.Header().Set("Trailer", "X-Up-Trailer")
	}
	_, _ = io.WriteString(w, "body")
	if r.Header.Get("X-Want-Trailers") != "" {
		w.Header().Set("X-Up-Trailer", "up")
	}
}

// requestWithTrailers builds a chunked POST whose trailer X-Client-Trailer arrives
// after the body.
func requestWithTrailers(g *gateway, withTrailers bool) *http.Request {
	req, _ := http.NewRequest("POST", g.srv.URL+"/", chunked("ab", "cd"))
	if withTrailers {
		req.Trailer = http.Header{"X-Client-Trailer": nil}
		req.Body = &trailerBody{ReadCloser: io.NopCloser(chunked("ab", "cd")), req: req}
		req.Header.Set("X-Want-Trailers", "1")
	}
	return req
}

type trailerBody struct {
	io.ReadCloser
	req *http.Request
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Client-Trailer", "client")
	}
	return n, err
}

// Families 9 and 21: trailers present or absent, in every body mode: a trailers message
// only when there are trailers; the last body message ends the stream otherwise.
// Trailer mutations reach upstream and client.
func TestTrailers(t *testing.T) {
	t.Parallel()
	for _, mode := range []v1alpha1.BodySendMode{none, streamed, buffered, partial, duplex} {
		for _, with := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/trailers=%v", mode, with), func(t *testing.T) {
				t.Parallel()
				h := func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
					switch {
					case m.GetRequestTrailers() != nil:
						return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{
							HeaderMutation: hm(nil, set("x-client-trailer", "changed"))}}}
					case m.GetResponseTrailers() != nil:
						return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{
							HeaderMutation: hm(nil, set("x-up-trailer", "changed"), set("x-added-trailer", "new"))}}}
					}
					if mode == duplex {
						return duplexEcho(m)
					}
					return nil
				}
				p := newProc(t, answerWith(h))
				g := newGateway(t, spec(bodies(mode, mode), trailers(v1alpha1.Send, v1alpha1.Send)), p, withUpstream(trailerUpstream))
				res := g.send(requestWithTrailers(g, with))
				if res.Err != nil || res.Status != 200 || res.Body != "body" {
					t.Fatalf("client got %+v", res)
				}
				up := g.up.seen(t)
				if up.Body != "abcd" {
					t.Errorf("upstream body %q", up.Body)
				}
				g.exchange()
				kinds := strings.Join(p.kinds(), " ")
				if with {
					if up.Trailer.Get("X-Client-Trailer") != "changed" {
						t.Errorf("upstream trailers %v", up.Trailer)
					}
					if res.Trailer.Get("X-Up-Trailer") != "changed" || res.Trailer.Get("X-Added-Trailer") != "new" {
						t.Errorf("client trailers %v", res.Trailer)
					}
					if !strings.Contains(kinds, "request_trailers") || !strings.Contains(kinds, "response_trailers") {
						t.Errorf("processor got %s", kinds)
					}
				} else if strings.Contains(kinds, "trailers") {
					t.Errorf("no trailers, yet processor got %s", kinds)
				}
				// The last body message ends the stream only without trailers.
				var lastReq, lastResp *extprocv3.HttpBody
				for _, m := range p.received() {
					if b := m.GetRequestBody(); b != nil {
						lastReq = b
					}
					if b := m.GetResponseBody(); b != nil {
						lastResp = b
					}
				}
				if mode != none && (lastReq.GetEndOfStream() == with || lastResp.GetEndOfStream() == with) {
					t.Errorf("last body messages eos: request %v response %v, trailers %v", lastReq.GetEndOfStream(), lastResp.GetEndOfStream(), with)
				}
			})
		}
	}
}

// CommonResponse.trailers in a response headers answer adds response trailers (the
// documented sample processor's setTrailers).
func TestTrailersFromHeadersAnswer(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			cr := &extprocv3.CommonResponse{Trailers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-sample-trailer", RawValue: []byte("t")}}}}
			return respHeadersAns(cr)
		}
		return nil
	}))
	g := newGateway(t, spec(), p, withUpstream(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "chunked")
		_, _ = io.WriteString(w, "body")
		w.(http.Flusher).Flush()
	}))
	res := g.do("GET", "/", nil)
	if res.Status != 200 || res.Body != "body" || res.Trailer.Get("X-Sample-Trailer") != "t" {
		t.Fatalf("client got %d %q trailers %v", res.Status, res.Body, res.Trailer)
	}
	g.exchange()
}
