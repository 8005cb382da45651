package extproc

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait in these tests.
const waitFor = 5 * time.Second

// ---- the scripted processor ----

// handler plays the processor's side of one stream.
type handler func(s extprocv3.ExternalProcessor_ProcessServer) error

// streamEnd is how one stream ended, seen from the processor.
type streamEnd struct {
	// canceled: the gateway reset the stream (the handler's context was cancelled
	// before it returned).
	canceled bool
	// sawEOF: the gateway half-closed the stream.
	sawEOF bool
}

// testProc is an in-process processor on loopback; each test dictates its answers.
type testProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	addr string
	port int32
	srv  *grpc.Server
	h    handler

	mu   sync.Mutex
	got  []*extprocv3.ProcessingRequest
	md   []metadata.MD
	ends chan streamEnd
	open atomic.Int32
	// noRecord keeps benchmarks from recording every message.
	noRecord bool
}

func newProc(t testing.TB, h handler, opts ...grpc.ServerOption) *testProc {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProc{addr: lis.Addr().String(), port: int32(lis.Addr().(*net.TCPAddr).Port), h: h,
		srv: grpc.NewServer(opts...), ends: make(chan streamEnd, 1024)}
	extprocv3.RegisterExternalProcessorServer(p.srv, p)
	go func() { _ = p.srv.Serve(lis) }()
	t.Cleanup(p.srv.Stop)
	return p
}

type recording struct {
	extprocv3.ExternalProcessor_ProcessServer
	p      *testProc
	sawEOF bool
}

func (r *recording) Recv() (*extprocv3.ProcessingRequest, error) {
	m, err := r.ExternalProcessor_ProcessServer.Recv()
	if err == io.EOF {
		r.sawEOF = true
	}
	if m != nil && !r.p.noRecord {
		r.p.mu.Lock()
		r.p.got = append(r.p.got, m)
		r.p.mu.Unlock()
	}
	return m, err
}

func (p *testProc) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	p.open.Add(1)
	md, _ := metadata.FromIncomingContext(s.Context())
	p.mu.Lock()
	p.md = append(p.md, md)
	p.mu.Unlock()
	r := &recording{ExternalProcessor_ProcessServer: s, p: p}
	err := p.h(r)
	select {
	case p.ends <- streamEnd{canceled: s.Context().Err() != nil, sawEOF: r.sawEOF}:
	default:
	}
	return err
}

// received returns the messages received so far.
func (p *testProc) received() []*extprocv3.ProcessingRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*extprocv3.ProcessingRequest(nil), p.got...)
}

// kinds lists the kinds of the messages received, as phase names.
func (p *testProc) kinds() []string {
	var out []string
	for _, m := range p.received() {
		out = append(out, kindOf(m))
	}
	return out
}

func kindOf(m *extprocv3.ProcessingRequest) string {
	switch m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingRequest_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return "?"
}

// end waits for one stream to end.
func (p *testProc) end(t testing.TB) streamEnd {
	t.Helper()
	select {
	case e := <-p.ends:
		return e
	case <-time.After(waitFor):
		t.Fatal("processor stream did not end")
	}
	return streamEnd{}
}

// Sentinel answers for answerWith: what the processor does instead of answering.
var (
	closeOK  = &extprocv3.ProcessingResponse{}
	hang     = &extprocv3.ProcessingResponse{}
	failRPC  = &extprocv3.ProcessingResponse{}
	noAnswer = &extprocv3.ProcessingResponse{}
)

// answerWith answers each message with fn's answer (nil: the empty answer of the
// matching kind), until the gateway half-closes.
func answerWith(fn func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse) handler {
	return func(s extprocv3.ExternalProcessor_ProcessServer) error {
		for {
			m, err := s.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			var a *extprocv3.ProcessingResponse
			if fn != nil {
				a = fn(m)
			}
			switch a {
			case nil:
				a = empty(m)
			case closeOK:
				return nil
			case hang:
				<-s.Context().Done()
				return s.Context().Err()
			case failRPC:
				return status.Error(codes.Internal, "processor failed")
			case noAnswer:
				continue
			}
			if err := s.Send(a); err != nil {
				return err
			}
		}
	}
}

// echo answers every message with the empty answer of its kind.
var echo = answerWith(nil)

// empty is the "no change" answer to m.
func empty(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	switch m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	}
	return &extprocv3.ProcessingResponse{}
}

// ---- answer builders ----

func set(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

func hm(remove []string, sets ...*corev3.HeaderValueOption) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{SetHeaders: sets, RemoveHeaders: remove}
}

func common(mut *extprocv3.HeaderMutation, body []byte) *extprocv3.CommonResponse {
	cr := &extprocv3.CommonResponse{HeaderMutation: mut}
	if body != nil {
		cr.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}
	}
	return cr
}

func reqHeadersAns(cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: cr}}}
}

func respHeadersAns(cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: cr}}}
}

func reqBodyAns(cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: cr}}}
}

func respBodyAns(cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: cr}}}
}

func immediate(code int, body string, mut *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	ir := &extprocv3.ImmediateResponse{Body: []byte(body), Headers: mut}
	if code != 0 {
		ir.Status = &typev3.HttpStatus{Code: typev3.StatusCode(code)}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: ir}}
}

// headerOf returns the value of key in a header map sent to the processor.
func headerOf(m *corev3.HeaderMap, key string) (string, bool) {
	for _, h := range m.GetHeaders() {
		if h.GetKey() == key {
			if len(h.GetRawValue()) > 0 {
				return string(h.GetRawValue()), true
			}
			return h.GetValue(), true
		}
	}
	return "", false
}
