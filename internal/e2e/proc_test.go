package e2e

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// seq orders events across processors: every stream opening and message gets the next
// number.
var seq atomic.Int64

// msg is one message a processor received.
type msg struct {
	seq int64
	m   *extprocv3.ProcessingRequest
}

// streamRec is one stream as the processor saw it.
type streamRec struct {
	opened int64
	md     metadata.MD
	mu     sync.Mutex
	msgs   []msg
}

func (s *streamRec) messages() []*extprocv3.ProcessingRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*extprocv3.ProcessingRequest, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = m.m
	}
	return out
}

func (s *streamRec) kinds() []string {
	var out []string
	for _, m := range s.messages() {
		out = append(out, kindOf(m))
	}
	return out
}

// answerFunc dictates the answer to each message; nil means the empty answer of the
// matching kind. The sentinels below make the processor misbehave instead.
type answerFunc func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse

var (
	hang    = &extprocv3.ProcessingResponse{} // never answer; wait for the gateway to go away
	failRPC = &extprocv3.ProcessingResponse{} // end the stream with a gRPC error
)

// proc is a scripted processor on 127.0.0.1:0: each test dictates its answers, and it
// records every stream, message and accepted TCP connection.
type proc struct {
	extprocv3.UnimplementedExternalProcessorServer
	name   string
	addr   string
	answer answerFunc
	srv    *grpc.Server
	conns  atomic.Int32
	quiet  bool // do not record (benchmarks)

	mu      sync.Mutex
	streams []*streamRec
	// ended receives, for each stream, whether the gateway had cancelled it when the
	// processor's handler returned.
	ended chan bool
}

// countingListener counts the TCP connections a processor accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func newProc(t testing.TB, name string, answer answerFunc) *proc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, addr: ln.Addr().String(), answer: answer, srv: grpc.NewServer(), ended: make(chan bool, 64)}
	extprocv3.RegisterExternalProcessorServer(p.srv, p)
	go func() { _ = p.srv.Serve(countingListener{Listener: ln, n: &p.conns}) }()
	t.Cleanup(p.srv.Stop)
	return p
}

func (p *proc) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	defer func() {
		select {
		case p.ended <- s.Context().Err() != nil:
		default:
		}
	}()
	rec := &streamRec{opened: seq.Add(1)}
	rec.md, _ = metadata.FromIncomingContext(s.Context())
	if !p.quiet {
		p.mu.Lock()
		p.streams = append(p.streams, rec)
		p.mu.Unlock()
	}
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !p.quiet {
			rec.mu.Lock()
			rec.msgs = append(rec.msgs, msg{seq: seq.Add(1), m: m})
			rec.mu.Unlock()
		}
		var a *extprocv3.ProcessingResponse
		if p.answer != nil {
			a = p.answer(m)
		}
		switch a {
		case nil:
			a = empty(m)
		case hang:
			<-s.Context().Done()
			return s.Context().Err()
		case failRPC:
			return status.Error(codes.Internal, "scripted failure")
		}
		if err := s.Send(a); err != nil {
			return err
		}
	}
}

// all returns the streams opened so far.
func (p *proc) all() []*streamRec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*streamRec(nil), p.streams...)
}

// count is the number of streams opened so far.
func (p *proc) count() int { return len(p.all()) }

// only waits until exactly one stream has received n messages and returns it.
func (p *proc) only(t testing.TB, n int) *streamRec {
	t.Helper()
	eventually(t, p.name+" to receive its messages", func() bool {
		ss := p.all()
		return len(ss) == 1 && len(ss[0].messages()) >= n
	})
	return p.all()[0]
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
	return "unknown"
}

// empty is the "no change" answer to m.
func empty(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	switch m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return reqHeadersAns(nil)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return respHeadersAns(nil)
	case *extprocv3.ProcessingRequest_RequestBody:
		return reqBodyAns(nil)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return respBodyAns(nil)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	}
	return &extprocv3.ProcessingResponse{}
}

// ---- answers ----

func setHdr(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

func mutation(remove []string, sets ...*corev3.HeaderValueOption) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{SetHeaders: sets, RemoveHeaders: remove}
}

func withBody(cr *extprocv3.CommonResponse, body string) *extprocv3.CommonResponse {
	cr.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(body)}}
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

// headerOf returns the value of key in a header map the gateway sent.
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

// reqHeaders is the request headers message of a stream.
func reqHeaders(t testing.TB, s *streamRec) *corev3.HeaderMap {
	t.Helper()
	for _, m := range s.messages() {
		if h := m.GetRequestHeaders(); h != nil {
			return h.GetHeaders()
		}
	}
	t.Fatalf("no request_headers message; got %v", s.kinds())
	return nil
}
