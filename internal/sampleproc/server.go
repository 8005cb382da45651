package sampleproc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/status"
)

// Options configures a sample processor. The zero value is a processor that only follows
// instructions, which is what the documentation's walkthrough expects.
type Options struct {
	// AddHeaders are (name, value) pairs set on every request, in addition to whatever
	// the instructions say. They let a demo prove the processor is in the path without
	// the client having to send an instructions header.
	AddHeaders [][2]string

	// Logger receives one line per stream and per rejected instruction. Nil discards
	// logs, so embedding the processor in another program stays quiet by default.
	Logger *slog.Logger

	// ShutdownGrace bounds how long Serve waits for open streams when its context is
	// cancelled. A gateway may keep an ext_proc stream open for as long as a client
	// keeps its request open, so an unbounded graceful stop could hang forever. Zero
	// means five seconds.
	ShutdownGrace time.Duration
}

// defaultShutdownGrace is long enough for in-flight exchanges of a demo to finish, and
// short enough that Ctrl-C feels immediate.
const defaultShutdownGrace = 5 * time.Second

// Server implements the ExternalProcessor service as the documentation's sample processor.
// It keeps no state between streams, so one Server can serve any number of gateways.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	addHeaders [][2]string
	log        *slog.Logger
	grace      time.Duration
	// health is owned by the processor rather than by Register so that Serve can flip it
	// to NOT_SERVING before draining, letting health-checking gateways stop sending new
	// streams first.
	health *health.Server
}

// New returns a processor configured by opts. The options are copied, so the caller may
// reuse them.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	grace := opts.ShutdownGrace
	if grace <= 0 {
		grace = defaultShutdownGrace
	}
	return &Server{
		addHeaders: slices.Clone(opts.AddHeaders),
		log:        log,
		grace:      grace,
		health:     health.NewServer(),
	}
}

// streamState is what a processor must remember within one stream: only the body modes,
// because Envoy announces them once, on the first message, and every later body message
// depends on them.
type streamState struct {
	configured         bool
	requestFullDuplex  bool
	responseFullDuplex bool
}

// Process serves one HTTP exchange. Every message is answered in order, one answer per
// message, except in observability mode where the gateway ignores answers and the protocol
// asks the processor not to send any.
func (s *Server) Process(stream grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	s.log.Debug("ext_proc stream opened")
	var st streamState
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			s.log.Debug("ext_proc stream closed by the gateway")
			return nil
		}
		if err != nil {
			// The stream is already gone (cancelled or reset); the status we return
			// is never seen, but keeping the cause helps in server-side logs.
			return fmt.Errorf("receiving ext_proc message: %w", err)
		}
		resp, err := s.answer(&st, req)
		if err != nil {
			s.log.Warn("ending ext_proc stream", "error", err)
			return err
		}
		if resp == nil || req.GetObservabilityMode() {
			continue
		}
		if err := stream.Send(resp); err != nil {
			return fmt.Errorf("sending ext_proc answer: %w", err)
		}
	}
}

// answer computes the response to one message. A nil response with a nil error means
// the message needs no answer (for example a flow-control-only message).
func (s *Server) answer(st *streamState, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if pc := req.GetProtocolConfig(); pc != nil && !st.configured {
		st.configured = true
		st.requestFullDuplex = pc.GetRequestBodyMode() == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
		st.responseFullDuplex = pc.GetResponseBodyMode() == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		cr, err := s.headers("request", r.RequestHeaders, s.addHeaders)
		if err != nil {
			return nil, err
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{Response: cr},
		}}, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		// The response is steered by its own instructions header; the request's
		// instructions are deliberately not remembered, which is what lets httpbin's
		// /response-headers endpoint drive this phase.
		cr, err := s.headers("response", r.ResponseHeaders, nil)
		if err != nil {
			return nil, err
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{Response: cr},
		}}, nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: echoBody(r.RequestBody, st.requestFullDuplex),
		}}, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: echoBody(r.ResponseBody, st.responseFullDuplex),
		}}, nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{},
		}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{},
		}}, nil
	default:
		// Newer data planes may send messages that carry only flow-control updates;
		// they expect no answer, and answering would be a spurious message.
		return nil, nil
	}
}

// headers answers a request or response headers message. Malformed instructions end the
// stream with InvalidArgument, so that a fail-closed gateway shows the user a 500 instead
// of quietly forwarding a request the user meant to change.
func (s *Server) headers(direction string, h *extprocv3.HttpHeaders, extra [][2]string) (*extprocv3.CommonResponse, error) {
	in, err := parseInstructions(findInstructions(h.GetHeaders()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s headers: %v", direction, err)
	}
	if in != nil {
		s.log.Debug("applying instructions", "direction", direction,
			"add", len(in.AddHeaders), "remove", len(in.RemoveHeaders),
			"set_body", in.SetBody != nil, "set_trailers", len(in.SetTrailers))
	}
	return headersAnswer(in, extra), nil
}

// echoBody answers a body chunk without changing it. In full-duplex mode the gateway
// forwards only what the processor streams back, so the chunk must be returned verbatim;
// in every other mode an empty CONTINUE leaves the gateway's copy untouched.
func echoBody(b *extprocv3.HttpBody, fullDuplex bool) *extprocv3.BodyResponse {
	cr := &extprocv3.CommonResponse{}
	if fullDuplex {
		cr.BodyMutation = &extprocv3.BodyMutation{
			Mutation: &extprocv3.BodyMutation_StreamedResponse{
				StreamedResponse: &extprocv3.StreamedBodyResponse{
					Body:        b.GetBody(),
					EndOfStream: b.GetEndOfStream(),
				},
			},
		}
	}
	return &extprocv3.BodyResponse{Response: cr}
}
