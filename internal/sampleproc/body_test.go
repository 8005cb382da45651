package sampleproc

import (
	"context"
	"errors"
	"io"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// withConfig marks m as the first message of a stream, which is where the gateway
// announces its body modes.
func withConfig(m *extprocv3.ProcessingRequest, reqMode, respMode filterv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingRequest {
	m.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: reqMode, ResponseBodyMode: respMode}
	return m
}

func wantReqBodyContinue() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}},
	}}
}

func wantRespBodyContinue() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}},
	}}
}

func streamed(body string, eos bool) *extprocv3.CommonResponse {
	return &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{
			Body: []byte(body), EndOfStream: eos,
		}},
	}}
}

func wantReqStreamed(body string, eos bool) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: streamed(body, eos)},
	}}
}

func wantRespStreamed(body string, eos bool) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: streamed(body, eos)},
	}}
}

func TestBodiesAndTrailers(t *testing.T) {
	t.Parallel()
	conn := startServer(t, Options{})

	empty := &extprocv3.CommonResponse{}
	tests := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
		want []*extprocv3.ProcessingResponse
	}{
		{
			name: "buffered bodies get an empty CONTINUE",
			msgs: []*extprocv3.ProcessingRequest{
				withConfig(reqHeaders(headerMap(":method", "POST"), false), filterv3.ProcessingMode_BUFFERED, filterv3.ProcessingMode_BUFFERED),
				reqBody(`{"a":1}`, true),
				respHeaders(headerMap(":status", "200"), false),
				respBody("response", true),
			},
			want: []*extprocv3.ProcessingResponse{
				wantReqHeaders(empty), wantReqBodyContinue(), wantRespHeaders(empty), wantRespBodyContinue(),
			},
		},
		{
			name: "streamed chunks without protocol_config get an empty CONTINUE each",
			msgs: []*extprocv3.ProcessingRequest{
				reqHeaders(headerMap(":method", "POST"), false),
				reqBody("ab", false),
				reqBody("", true),
			},
			want: []*extprocv3.ProcessingResponse{wantReqHeaders(empty), wantReqBodyContinue(), wantReqBodyContinue()},
		},
		{
			name: "full duplex echoes request chunks",
			msgs: []*extprocv3.ProcessingRequest{
				withConfig(reqHeaders(headerMap(":method", "POST"), false), filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, filterv3.ProcessingMode_NONE),
				reqBody("ab", false),
				reqBody("\x00\xffcd", false),
				reqBody("", true),
			},
			want: []*extprocv3.ProcessingResponse{
				wantReqHeaders(empty),
				wantReqStreamed("ab", false), wantReqStreamed("\x00\xffcd", false), wantReqStreamed("", true),
			},
		},
		{
			name: "full duplex on the response only",
			msgs: []*extprocv3.ProcessingRequest{
				withConfig(reqHeaders(headerMap(":method", "PUT"), false), filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_FULL_DUPLEX_STREAMED),
				reqBody("req", true),
				respHeaders(headerMap(":status", "200"), false),
				respBody("resp-1", false),
				respBody("resp-2", true),
			},
			want: []*extprocv3.ProcessingResponse{
				wantReqHeaders(empty), wantReqBodyContinue(),
				wantRespHeaders(empty), wantRespStreamed("resp-1", false), wantRespStreamed("resp-2", true),
			},
		},
		{
			name: "trailers get an empty answer",
			msgs: []*extprocv3.ProcessingRequest{
				withConfig(reqHeaders(headerMap(":method", "POST"), false), filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, filterv3.ProcessingMode_FULL_DUPLEX_STREAMED),
				reqBody("x", false),
				{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{Trailers: headerMap("x-t", "1")}}},
				respHeaders(headerMap(":status", "200"), false),
				{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: headerMap("grpc-status", "0")}}},
			},
			want: []*extprocv3.ProcessingResponse{
				wantReqHeaders(empty), wantReqStreamed("x", false),
				{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}},
				wantRespHeaders(empty),
				{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}},
			},
		},
		{
			name: "protocol_config is taken from the first message only",
			msgs: []*extprocv3.ProcessingRequest{
				withConfig(reqHeaders(headerMap(":method", "POST"), false), filterv3.ProcessingMode_BUFFERED, filterv3.ProcessingMode_NONE),
				withConfig(reqBody("b", true), filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, filterv3.ProcessingMode_NONE),
			},
			want: []*extprocv3.ProcessingResponse{wantReqHeaders(empty), wantReqBodyContinue()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := exchange(t, conn, tt.msgs...)
			if err != nil {
				t.Fatalf("exchange: %v (answers so far:\n%s)", err, formatAll(got))
			}
			assertAnswers(t, got, tt.want)
		})
	}
}

func TestObservabilityModeIsNotAnswered(t *testing.T) {
	t.Parallel()
	conn := startServer(t, Options{AddHeaders: [][2]string{{"x-a", "1"}}})

	obs := func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingRequest {
		m.ObservabilityMode = true
		return m
	}
	got, err := exchange(t, conn,
		obs(reqHeaders(headerMap("instructions", `{"addHeaders":{"x-b":"2"}}`), false)),
		obs(reqBody("body", true)),
		obs(respHeaders(&corev3.HeaderMap{}, true)),
	)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("got answers in observability mode:\n%s", formatAll(got))
	}
}

func TestFlowControlOnlyMessageIsNotAnswered(t *testing.T) {
	t.Parallel()
	conn := startServer(t, Options{})

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatalf("opening stream: %v", err)
	}
	// Sent back to back: if the first were answered, its answer would arrive first.
	msgs := []*extprocv3.ProcessingRequest{
		{ClientWindowUpdate: &extprocv3.ProcessingRequest_ClientWindowUpdate{WindowIncrementSidestreamToUpstream: 1}},
		reqHeaders(headerMap(":path", "/"), true),
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	var got []*extprocv3.ProcessingResponse
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		got = append(got, resp)
	}
	assertAnswers(t, got, []*extprocv3.ProcessingResponse{wantReqHeaders(&extprocv3.CommonResponse{})})
}
