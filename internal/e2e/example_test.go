package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/mccutchen/go-httpbin/v2/httpbin"
	"google.golang.org/grpc"

	"github.com/sluice-gateway/sluice/internal/sampleproc"
)

// recorder keeps what a gRPC server received, through a stream interceptor, so that a
// processor we do not own (the sample processor) can be observed.
type recorder struct {
	mu   sync.Mutex
	msgs []*extprocv3.ProcessingRequest
}

type recordingStream struct {
	grpc.ServerStream
	r *recorder
}

func (s recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if pr, ok := m.(*extprocv3.ProcessingRequest); ok && err == nil {
		s.r.mu.Lock()
		s.r.msgs = append(s.r.msgs, pr)
		s.r.mu.Unlock()
	}
	return err
}

func (r *recorder) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, recordingStream{ServerStream: ss, r: r})
}

func (r *recorder) all() []*extprocv3.ProcessingRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*extprocv3.ProcessingRequest(nil), r.msgs...)
}

// startSample runs the sample processor on a free port, observed by a recorder.
func startSample(t *testing.T) (string, *recorder) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	gs := grpc.NewServer(grpc.StreamInterceptor(rec.intercept))
	sampleproc.Register(gs, sampleproc.New(sampleproc.Options{}))
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String(), rec
}

// exampleConfig is examples/extproc/extproc.yaml with its ports moved to the test's.
func exampleConfig(t *testing.T, httpbinAddr, procAddr string) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/extproc/extproc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	_, binPort, _ := net.SplitHostPort(httpbinAddr)
	_, procPort, _ := net.SplitHostPort(procAddr)
	for old, repl := range map[string]string{"port: 8080": "port: {{PORT}}", "port: 8000": "port: " + binPort, "port: 18080": "port: " + procPort} {
		if strings.Count(cfg, old) != 1 {
			t.Fatalf("the example has %d %q, want 1; has it changed?", strings.Count(cfg, old), old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	return cfg
}

func TestDocumentedExampleFileMode(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var upstreamSaw []http.Header
	bin := httpbin.New()
	hb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamSaw = append(upstreamSaw, r.Header.Clone())
		mu.Unlock()
		bin.ServeHTTP(w, r)
	}))
	t.Cleanup(hb.Close)
	procAddr, rec := startSample(t)
	g := startGateway(t, exampleConfig(t, hb.Listener.Addr().String(), procAddr))

	// The documented request.
	r := g.get("www.example.com", "/headers", "instructions", `{"addHeaders":{"extproc":"true"}}`)
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	var got struct{ Headers map[string][]string }
	if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
		t.Fatalf("httpbin's answer: %v\n%s", err, r.Body)
	}
	if v := got.Headers["Extproc"]; len(v) != 1 || v[0] != "true" {
		t.Errorf("httpbin saw Extproc %q, want [true]; headers %v", v, got.Headers)
	}
	if _, ok := got.Headers["Instructions"]; !ok {
		t.Errorf("httpbin did not see Instructions: %v", got.Headers)
	}
	mu.Lock()
	if len(upstreamSaw) != 1 || upstreamSaw[0].Get("Extproc") != "true" {
		t.Errorf("upstream saw %v, want one request with Extproc: true", upstreamSaw)
	}
	mu.Unlock()
	// The processor saw request headers (with the instructions and the pseudo-headers)
	// and response headers.
	msgs := rec.all()
	var kinds []string
	for _, m := range msgs {
		kinds = append(kinds, kindOf(m))
	}
	if strings.Join(kinds, ",") != "request_headers,response_headers" {
		t.Fatalf("processor received %v, want request_headers,response_headers", kinds)
	}
	h := msgs[0].GetRequestHeaders()
	for k, want := range map[string]string{":path": "/headers", ":method": "GET", ":authority": "www.example.com",
		"instructions": `{"addHeaders":{"extproc":"true"}}`} {
		if v, _ := headerOf(h.GetHeaders(), k); v != want {
			t.Errorf("processor saw %s = %q, want %q", k, v, want)
		}
	}
	if !h.GetEndOfStream() {
		t.Error("a GET's request headers should have end_of_stream")
	}
	if v, _ := headerOf(msgs[1].GetResponseHeaders().GetHeaders(), ":status"); v != "200" {
		t.Errorf("processor saw :status %q", v)
	}

	// Response-side instructions come from httpbin's own response headers.
	instr := url.QueryEscape(`{"addHeaders":{"x-from-processor":"yes"},"removeHeaders":["access-control-allow-origin"]}`)
	r = g.get("www.example.com", "/response-headers?instructions="+instr)
	if r.Status != 200 || r.Header.Get("X-From-Processor") != "yes" || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("response instructions: status %d, headers %v", r.Status, r.Header)
	}

	// setBody replaces the response body.
	instr = url.QueryEscape(`{"setBody":"replaced by the processor"}`)
	r = g.get("www.example.com", "/response-headers?instructions="+instr)
	if r.Status != 200 || r.Body != "replaced by the processor" {
		t.Errorf("setBody: status %d, body %q", r.Status, r.Body)
	}

	// Malformed instructions end the stream with an error: fail-closed answers 500 and
	// httpbin is not asked.
	mu.Lock()
	before := len(upstreamSaw)
	mu.Unlock()
	r = g.get("www.example.com", "/headers", "instructions", "{not json")
	if r.Status != 500 {
		t.Errorf("malformed instructions: status %d, want 500", r.Status)
	}
	mu.Lock()
	if len(upstreamSaw) != before {
		t.Errorf("upstream contacted despite the processor failing")
	}
	mu.Unlock()

	// Another host is not routed.
	if r := g.get("other.example.com", "/headers"); r.Status != 404 {
		t.Errorf("unrouted host: %d", r.Status)
	}
}
