package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// trailingBody is a request body that fills in the request's trailer when it ends, as
// net/http's client expects.
type trailingBody struct {
	r   io.Reader
	req *http.Request
}

func (b *trailingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Client-Trailer", "from-client")
	}
	return n, err
}

func (b *trailingBody) Close() error { return nil }

func TestTrailerMutationsBothWays(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Up-Trailer")
		_, _ = io.WriteString(w, "got "+r.Trailer.Get("X-Client-Trailer"))
		w.Header().Set("X-Up-Trailer", "from-upstream")
	})
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case m.GetRequestTrailers() != nil:
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{
				HeaderMutation: mutation(nil, setHdr("x-client-trailer", "changed-by-processor"))}}}
		case m.GetResponseTrailers() != nil:
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{
				HeaderMutation: mutation(nil, setHdr("x-up-trailer", "changed-by-processor"))}}}
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "processingOptions: {requestTrailerMode: Send, responseTrailerMode: Send}"),
	))
	req, err := http.NewRequest("POST", g.url("/t"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "a.example.com"
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Client-Trailer": nil}
	req.Body = &trailingBody{r: strings.NewReader("payload"), req: req}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "got changed-by-processor" {
		t.Errorf("client got %d %q", resp.StatusCode, body)
	}
	if v := resp.Trailer.Get("X-Up-Trailer"); v != "changed-by-processor" {
		t.Errorf("client got response trailer %q, want the processor's", v)
	}
	if e := up.seen(t); e.Body != "payload" || e.Trailer.Get("X-Client-Trailer") != "changed-by-processor" {
		t.Errorf("upstream saw body %q trailer %v", e.Body, e.Trailer)
	}
	st := p.only(t, 4)
	if k := strings.Join(st.kinds(), ","); k != "request_headers,request_trailers,response_headers,response_trailers" {
		t.Fatalf("processor received %s", k)
	}
	msgs := st.messages()
	if v, _ := headerOf(msgs[1].GetRequestTrailers().GetTrailers(), "x-client-trailer"); v != "from-client" {
		t.Errorf("processor saw request trailer %q", v)
	}
	if v, _ := headerOf(msgs[3].GetResponseTrailers().GetTrailers(), "x-up-trailer"); v != "from-upstream" {
		t.Errorf("processor saw response trailer %q", v)
	}
}
