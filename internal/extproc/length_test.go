package extproc

import (
	"io"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// TestProcessorContentLength: a processor that sets a content-length the body does not
// have (the body going on unchanged, not sent to the processor) fails the request with
// 500 before the upstream sees it (request side) or before the client gets a truncated
// or overlong response (response side). Removing the length, or setting the one the
// body has, is fine; so is any length on a response that carries no body (HEAD).
func TestProcessorContentLength(t *testing.T) {
	t.Parallel()
	setLength := func(onRequest bool, value string) handler {
		return answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			switch {
			case m.GetRequestHeaders() != nil && onRequest:
				return reqHeadersAns(common(hm(nil, set("content-length", value)), nil))
			case m.GetResponseHeaders() != nil && !onRequest:
				return respHeadersAns(common(hm(nil, set("content-length", value)), nil))
			}
			return nil
		})
	}
	removeLength := answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return reqHeadersAns(common(hm([]string{"content-length"}), nil))
		}
		return nil
	})
	unknownLength := func() io.Reader { return io.MultiReader(strings.NewReader("hello")) } // no length known to the client

	tests := []struct {
		name     string
		proc     handler
		method   string
		body     func() io.Reader
		status   int
		upstream bool // the upstream is reached
		wantBody string
	}{
		{"request shorter", setLength(true, "3"), "POST", func() io.Reader { return strings.NewReader("hello") }, 500, false, ""},
		{"request longer", setLength(true, "9"), "POST", func() io.Reader { return strings.NewReader("hello") }, 500, false, ""},
		{"request without a body", setLength(true, "5"), "GET", func() io.Reader { return nil }, 500, false, ""},
		{"request of unknown length", setLength(true, "5"), "POST", unknownLength, 500, false, ""},
		{"request same length", setLength(true, "5"), "POST", func() io.Reader { return strings.NewReader("hello") }, 200, true, "upstream says hi"},
		{"request length removed", removeLength, "POST", func() io.Reader { return strings.NewReader("hello") }, 200, true, "upstream says hi"},
		{"response shorter", setLength(false, "3"), "GET", func() io.Reader { return nil }, 500, true, ""},
		{"response same length", setLength(false, "16"), "GET", func() io.Reader { return nil }, 200, true, "upstream says hi"},
		{"response to HEAD", setLength(false, "3"), "HEAD", func() io.Reader { return nil }, 200, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, tc.proc)
			g := newGateway(t, spec(), p)
			res := g.do(tc.method, "/", tc.body())
			if res.Err != nil || res.Status != tc.status || (tc.status == 200 && res.Body != tc.wantBody) {
				t.Fatalf("client got %d %q %v, want %d %q", res.Status, res.Body, res.Err, tc.status, tc.wantBody)
			}
			if tc.upstream {
				if up := g.up.seen(t); tc.status == 200 && tc.method == "POST" && up.Body != "hello" {
					t.Errorf("upstream got body %q, want hello", up.Body)
				}
			} else {
				g.up.none(t)
			}
			g.exchange()
		})
	}
}
