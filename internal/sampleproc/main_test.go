package sampleproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// waitTimeout bounds every wait in these tests so that a hung stream fails the test
// instead of the whole run.
const waitTimeout = 5 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer runs Serve on a loopback port and returns a client connection to it. Both
// are torn down when the test (including its parallel subtests) ends, and the test fails
// if Serve does not return cleanly.
func startServer(t *testing.T, opts Options) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, lis, opts) }()

	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-served
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("closing client: %v", err)
		}
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v, want nil after cancel", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Serve did not return within %v of cancel", waitTimeout)
		}
	})
	return conn
}

// exchange plays msgs on one stream the way a gateway does: send a message, wait for its
// answer, and finally half-close and expect the processor to end the stream cleanly. It
// returns the answers received and the first error, which for a processor-side failure
// is the gRPC status the gateway would see.
func exchange(t *testing.T, conn *grpc.ClientConn, msgs ...*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening stream: %w", err)
	}
	var got []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			// The real cause arrives with Recv.
			_, err = stream.Recv()
			return got, err
		}
		if m.GetObservabilityMode() {
			continue
		}
		resp, err := stream.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, resp)
	}
	if err := stream.CloseSend(); err != nil {
		return got, fmt.Errorf("half-closing: %w", err)
	}
	extra, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return got, nil
	}
	if err != nil {
		return got, err
	}
	return got, fmt.Errorf("unexpected extra answer: %v", prototext.Format(extra))
}

// assertAnswers compares answers message by message, printing both sides in text format
// because proto structs do not print usefully with %v.
func assertAnswers(t *testing.T, got, want []*extprocv3.ProcessingResponse) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d answers, want %d:\n%s", len(got), len(want), formatAll(got))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("answer %d:\ngot:  %s\nwant: %s", i, prototext.Format(got[i]), prototext.Format(want[i]))
		}
	}
}

func formatAll(rs []*extprocv3.ProcessingResponse) string {
	var s string
	for i, r := range rs {
		s += fmt.Sprintf("[%d] %s\n", i, prototext.Format(r))
	}
	return s
}

// headerMap builds headers the way Envoy sends them: lower-case keys, values in raw_value.
func headerMap(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

func reqHeaders(h *corev3.HeaderMap, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: h, EndOfStream: eos},
	}}
}

func respHeaders(h *corev3.HeaderMap, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: h, EndOfStream: eos},
	}}
}

func reqBody(body string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos},
	}}
}

func respBody(body string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos},
	}}
}

// Expected answers are spelled out field by field rather than built with the package's
// own helpers, so that a bug in those helpers cannot hide in both sides of a comparison.

func wantReqHeaders(cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: cr},
	}}
}

func wantRespHeaders(cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: cr},
	}}
}

func wantSet(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
