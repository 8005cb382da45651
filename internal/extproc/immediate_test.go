package extproc

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// Family 14: an immediate response in each phase and body mode. Before the response
// headers went out the client gets the local reply; after, its stream is reset.
func TestImmediateResponsePerPhase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at        string
		mode      v1alpha1.BodySendMode
		wantReset bool
		wantUp    bool
	}{
		{"request_headers", none, false, false},
		{"request_body", buffered, false, false},
		{"request_body", partial, false, false},
		{"request_body", streamed, false, false},
		{"response_headers", none, false, true},
		{"response_body", buffered, false, true},
		{"response_body", partial, false, true},
		{"response_body", streamed, true, true},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.at, tc.mode), func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if kindOf(m) == tc.at {
					return immediate(403, "denied", hm(nil, set("x-why", "policy")))
				}
				return nil
			}))
			g := newGateway(t, spec(bodies(tc.mode, tc.mode)), p, withUpstream(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "upstream body that is long enough")
			}))
			res := g.do("POST", "/", chunked("some ", "request ", "body"))
			if tc.wantReset {
				if res.Err == nil {
					t.Fatalf("want a reset stream, got %d %q", res.Status, res.Body)
				}
			} else if res.Status != 403 || res.Body != "denied" || res.Header.Get("X-Why") != "policy" {
				t.Fatalf("client got %+v", res)
			}
			switch {
			case tc.wantUp:
				g.up.seen(t)
			case tc.mode == streamed:
				// The headers went upstream before the body; the upstream sees the
				// request cut short.
			default:
				g.up.none(t)
			}
			g.exchange()
			for _, k := range p.kinds() {
				if tc.at != "response_headers" && tc.at != "response_body" && strings.HasPrefix(k, "response") {
					t.Errorf("processor got %s after a local reply", k)
				}
			}
		})
	}
}

// Family 15: immediate response edge cases.
func TestImmediateResponseEdges(t *testing.T) {
	t.Parallel()
	bad := func(v string) *extprocv3.HeaderMutation {
		return &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-bad", RawValue: []byte(v)}}}}
	}
	for _, tc := range []struct {
		name     string
		ans      *extprocv3.ProcessingResponse
		disable  bool
		want     int
		wantHdr  string
		wantGone string
	}{
		{"no status", immediate(0, "x", nil), false, 200, "", ""},
		{"status below 200", immediate(100, "x", nil), false, 200, "", ""},
		{"invalid header value", immediate(403, "x", bad("a\r\nb")), false, 500, "", ""},
		{"disallowed header dropped", immediate(403, "x", hm(nil, set("x-envoy-thing", "1"), set("x-ok", "1"))), false, 403, "X-Ok", "X-Envoy-Thing"},
		{"grpc status", grpcImmediate(), false, 200, "Grpc-Status", ""},
		{"disabled is spurious", immediate(403, "x", nil), true, 500, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetRequestHeaders() != nil {
					return cloneAnswer(tc.ans)
				}
				return nil
			}))
			s := spec()
			s.DisableImmediateResponse = tc.disable
			g := newGateway(t, s, p)
			res := g.do("GET", "/", nil)
			if res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			if tc.wantHdr != "" && res.Header.Get(tc.wantHdr) == "" {
				t.Errorf("missing %s in %v", tc.wantHdr, res.Header)
			}
			if tc.wantGone != "" && res.Header.Get(tc.wantGone) != "" {
				t.Errorf("%s must be dropped: %v", tc.wantGone, res.Header)
			}
			g.exchange()
		})
	}
}

func grpcImmediate() *extprocv3.ProcessingResponse {
	a := immediate(200, "", nil)
	a.GetImmediateResponse().GrpcStatus = &extprocv3.GrpcStatus{Status: 7}
	return a
}

// Headers the processor added to the request do not appear on a later local reply.
func TestImmediateResponseDropsRequestMutations(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return reqHeadersAns(common(hm(nil, set("x-added", "1")), nil))
		}
		if m.GetRequestBody() != nil {
			return immediate(401, "no", nil)
		}
		return nil
	}))
	g := newGateway(t, spec(bodies(buffered, none)), p)
	res := g.do("POST", "/", strings.NewReader("b"))
	if res.Status != 401 || res.Header.Get("X-Added") != "" {
		t.Fatalf("client got %d %v", res.Status, res.Header)
	}
	g.exchange()
}

// Family 16: a disallowed mutation with disallowIsError in a body answer fails.
func TestDisallowIsErrorInBodyAnswer(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestBody() != nil {
			return reqBodyAns(common(hm(nil, set("x-forbidden", "1")), nil))
		}
		return nil
	}))
	s := spec(bodies(buffered, none))
	s.MutationRules = &v1alpha1.MutationRules{DisallowExpression: "^x-forbidden$", DisallowIsError: true}
	g := newGateway(t, s, p)
	if res := g.do("POST", "/", strings.NewReader("b")); res.Status != 500 {
		t.Fatalf("status %d, want 500", res.Status)
	}
	g.up.none(t)
	g.exchange()
}

// Family 17: CONTINUE_AND_REPLACE.
func TestContinueAndReplace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mode     v1alpha1.BodySendMode
		method   string
		body     io.Reader
		mut      *extprocv3.HeaderMutation
		newBody  []byte
		wantMeth string
		wantBody string
	}{
		{"GET into POST", none, "GET", nil, hm(nil, set(":method", "POST"), set("content-type", "text/plain")), []byte("made up"), "POST", "made up"},
		{"full replacement", streamed, "POST", strings.NewReader("original"), nil, []byte("replaced"), "POST", "replaced"},
		{"replacement in buffered", buffered, "POST", strings.NewReader("original"), nil, []byte("replaced"), "POST", "replaced"},
		{"clear", buffered, "POST", strings.NewReader("original"), nil, []byte{}, "POST", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetRequestHeaders() != nil {
					cr := common(tc.mut, tc.newBody)
					cr.Status = extprocv3.CommonResponse_CONTINUE_AND_REPLACE
					return reqHeadersAns(cr)
				}
				return nil
			}))
			g := newGateway(t, spec(bodies(tc.mode, none), trailers(v1alpha1.Send, v1alpha1.Skip)), p)
			res := g.do(tc.method, "/", tc.body)
			if res.Status != 200 {
				t.Fatalf("status %d", res.Status)
			}
			up := g.up.seen(t)
			if up.Method != tc.wantMeth || up.Body != tc.wantBody {
				t.Errorf("upstream saw %s %q", up.Method, up.Body)
			}
			g.exchange()
			for _, k := range p.kinds() {
				if k == "request_body" || k == "request_trailers" {
					t.Errorf("processor got %s after CONTINUE_AND_REPLACE", k)
				}
			}
		})
	}
}

// A body rewrite in a CONTINUE headers answer (the sample processor's setBody).
func TestBodyInContinueHeadersAnswer(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			return respHeadersAns(common(hm(nil, set("content-type", "text/plain"), set("content-length", "3")), []byte("new")))
		}
		if m.GetRequestHeaders() != nil {
			// An empty body_mutation is no change.
			return reqHeadersAns(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{}})
		}
		return nil
	}))
	g := newGateway(t, spec(), p)
	res := g.do("POST", "/", strings.NewReader("keep"))
	if res.Status != 200 || res.Body != "new" || res.Header.Get("Content-Length") != "3" {
		t.Fatalf("client got %d %q %v", res.Status, res.Body, res.Header)
	}
	if up := g.up.seen(t); up.Body != "keep" {
		t.Errorf("upstream body %q", up.Body)
	}
	g.exchange()
}

// Family 37: streamed immediate response: headers only, and with body and trailers.
func TestStreamedImmediateResponse(t *testing.T) {
	t.Parallel()
	sir := func(r *extprocv3.StreamedImmediateResponse) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{StreamedImmediateResponse: r}}
	}
	hdrs := func(eos bool) *extprocv3.ProcessingResponse {
		return sir(&extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_HeadersResponse{HeadersResponse: &extprocv3.HttpHeaders{
			EndOfStream: eos,
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":status", RawValue: []byte("418")}, {Key: "x-local", RawValue: []byte("1")}}}}}})
	}
	body := func(b string, eos bool) *extprocv3.ProcessingResponse {
		return sir(&extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_BodyResponse{
			BodyResponse: &extprocv3.StreamedBodyResponse{Body: []byte(b), EndOfStream: eos}}})
	}
	trl := sir(&extprocv3.StreamedImmediateResponse{Response: &extprocv3.StreamedImmediateResponse_TrailersResponse{TrailersResponse: &corev3.HeaderMap{}}})
	for _, tc := range []struct {
		name     string
		msgs     []*extprocv3.ProcessingResponse
		wantBody string
	}{
		{"headers only", []*extprocv3.ProcessingResponse{hdrs(true)}, ""},
		{"body", []*extprocv3.ProcessingResponse{hdrs(false), body("ab", false), body("cd", true)}, "abcd"},
		{"body and trailers", []*extprocv3.ProcessingResponse{hdrs(false), body("ab", false), trl}, "ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
				if _, err := s.Recv(); err != nil {
					return err
				}
				for _, m := range tc.msgs {
					if err := s.Send(m); err != nil {
						return err
					}
				}
				_, err := s.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			})
			g := newGateway(t, spec(), p)
			res := g.do("GET", "/", nil)
			if res.Status != 418 || res.Body != tc.wantBody || res.Header.Get("X-Local") != "1" {
				t.Fatalf("client got %d %q %v", res.Status, res.Body, res.Header)
			}
			g.up.none(t)
			g.exchange()
		})
	}
}
