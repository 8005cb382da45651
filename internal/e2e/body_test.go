package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

func TestBufferedRequestBodyReplaced(t *testing.T) {
	t.Parallel()
	const newBody = `{"replaced":"by the processor"}`
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestBody() != nil {
			cr := withBody(&extprocv3.CommonResponse{HeaderMutation: mutation(nil,
				setHdr("content-length", strconv.Itoa(len(newBody))), setHdr("x-body-changed", "yes"))}, newBody)
			return reqBodyAns(cr)
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "processingOptions: {requestBodyMode: Buffered}"),
	))
	r := g.do("POST", "a.example.com", "/upload", strings.NewReader("the client's original body"), "Content-Type", "text/plain")
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	e := up.seen(t)
	if e.Body != newBody || e.CL != int64(len(newBody)) || e.Header.Get("X-Body-Changed") != "yes" {
		t.Errorf("upstream saw body %q, content-length %d, x-body-changed %q", e.Body, e.CL, e.Header.Get("X-Body-Changed"))
	}
	if c := decode(t, r); c.Body != newBody {
		t.Errorf("client got the echo of %q", c.Body)
	}
	st := p.only(t, 3)
	if k := strings.Join(st.kinds(), ","); k != "request_headers,request_body,response_headers" {
		t.Fatalf("processor received %s", k)
	}
	msgs := st.messages()
	if msgs[0].GetRequestHeaders().GetEndOfStream() {
		t.Error("request headers of a POST with a body had end_of_stream")
	}
	if b := msgs[1].GetRequestBody(); string(b.GetBody()) != "the client's original body" || !b.GetEndOfStream() {
		t.Errorf("processor got body %q eos %v, want the whole body at once", b.GetBody(), b.GetEndOfStream())
	}
	if cl, _ := headerOf(msgs[0].GetRequestHeaders().GetHeaders(), "content-length"); cl != "26" {
		t.Errorf("processor saw content-length %q, want 26 (kept in Buffered mode)", cl)
	}
}

func TestStreamedResponseBodyInOrder(t *testing.T) {
	t.Parallel()
	chunks := []string{"one,", "two,", "three"}
	// got is signalled for every response body message, so the upstream can write the
	// next chunk only after the processor has the previous one: each chunk is then its
	// own message.
	got := make(chan struct{}, 16)
	up := newUpstream(t, "up", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "13")
		fl := w.(http.Flusher)
		for _, c := range chunks {
			_, _ = w.Write([]byte(c))
			fl.Flush()
			select {
			case <-got:
			case <-time.After(waitFor):
				return
			}
		}
	})
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if b := m.GetResponseBody(); b != nil {
			if len(b.GetBody()) > 0 {
				got <- struct{}{}
			}
			return respBodyAns(withBody(&extprocv3.CommonResponse{}, "<"+strings.ToUpper(string(b.GetBody()))+">"))
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "processingOptions: {responseBodyMode: Streamed}"),
	))
	r := g.get("a.example.com", "/stream")
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	up.seen(t)
	st := p.only(t, 2)
	var seen []string
	var last *extprocv3.HttpBody
	for _, m := range st.messages() {
		if b := m.GetResponseBody(); b != nil {
			if len(b.GetBody()) > 0 {
				seen = append(seen, string(b.GetBody()))
			}
			last = b
		}
	}
	if strings.Join(seen, "|") != "one,|two,|three" {
		t.Errorf("processor received chunks %q, want one,|two,|three", seen)
	}
	if !last.GetEndOfStream() {
		t.Error("the last body message had no end_of_stream")
	}
	want := "<ONE,><TWO,><THREE>"
	if last != nil && len(last.GetBody()) == 0 {
		want += "<>"
	}
	if r.Body != want {
		t.Errorf("client got %q, want %q", r.Body, want)
	}
	if r.Header.Get("Content-Length") != "" {
		t.Errorf("client got Content-Length %q for a streamed, mutated body", r.Header.Get("Content-Length"))
	}
}

// Family 13: a Buffered body changed without fixing content-length is a 500; the upstream
// never sees the inconsistent request.
func TestBufferedBodyLengthMismatch(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestBody() != nil {
			return reqBodyAns(withBody(&extprocv3.CommonResponse{}, "a much longer body than the original"))
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "processingOptions: {requestBodyMode: Buffered}"),
	))
	if r := g.do("POST", "a.example.com", "/", strings.NewReader("short")); r.Status != 500 {
		t.Errorf("status %d, want 500", r.Status)
	}
	up.none(t)
}
