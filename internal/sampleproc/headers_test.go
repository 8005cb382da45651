package sampleproc

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestHeaderInstructions(t *testing.T) {
	t.Parallel()
	conn := startServer(t, Options{})

	// Every case is a GET-like exchange: request headers, then response headers, each
	// answered before the next is sent.
	tests := []struct {
		name         string
		request      *corev3.HeaderMap
		response     *corev3.HeaderMap
		wantRequest  *extprocv3.CommonResponse
		wantResponse *extprocv3.CommonResponse
	}{
		{
			name:         "documented request adds a header",
			request:      headerMap(":path", "/headers", "instructions", `{"addHeaders":{"extproc":"true"}}`),
			wantRequest:  &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{wantSet("extproc", "true")}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:    "addHeaders are sorted by name and overwrite",
			request: headerMap("instructions", `{"addHeaders":{"x-b":"2","x-a":"1, 2"}}`),
			wantRequest: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				wantSet("x-a", "1, 2"), wantSet("x-b", "2"),
			}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:         "removeHeaders keeps the order given",
			request:      headerMap("instructions", `{"removeHeaders":["x-z","instructions"]}`),
			wantRequest:  &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"x-z", "instructions"}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:    "setBody replaces the body and fixes content headers",
			request: headerMap("instructions", `{"setBody":"héllo"}`),
			wantRequest: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					wantSet("content-type", "text/plain"), wantSet("content-length", "6"),
				}},
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("héllo")}},
			},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:    "empty setBody still replaces the body",
			request: headerMap("instructions", `{"setBody":""}`),
			wantRequest: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					wantSet("content-type", "text/plain"), wantSet("content-length", "0"),
				}},
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{}},
			},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:    "setTrailers go in the common response",
			request: headerMap("instructions", `{"setTrailers":{"t-2":"b","t-1":"a"}}`),
			wantRequest: &extprocv3.CommonResponse{Trailers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "t-1", RawValue: []byte("a")}, {Key: "t-2", RawValue: []byte("b")},
			}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:    "all instructions at once",
			request: headerMap("instructions", `{"addHeaders":{"x-a":"1"},"removeHeaders":["x-r"],"setBody":"hi","setTrailers":{"t":"v"},"future":{"x":1}}`),
			wantRequest: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{
					SetHeaders: []*corev3.HeaderValueOption{
						wantSet("x-a", "1"), wantSet("content-type", "text/plain"), wantSet("content-length", "2"),
					},
					RemoveHeaders: []string{"x-r"},
				},
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("hi")}},
				Trailers:     &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "t", RawValue: []byte("v")}}},
			},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:        "response headers follow the response's own instructions",
			request:     headerMap(":path", "/response-headers"),
			response:    headerMap(":status", "200", "instructions", `{"addHeaders":{"x-resp":"yes"},"removeHeaders":["server"]}`),
			wantRequest: &extprocv3.CommonResponse{},
			wantResponse: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
				SetHeaders:    []*corev3.HeaderValueOption{wantSet("x-resp", "yes")},
				RemoveHeaders: []string{"server"},
			}},
		},
		{
			name:         "request instructions are not remembered for the response",
			request:      headerMap("instructions", `{"addHeaders":{"x-a":"1"}}`),
			response:     headerMap(":status", "200"),
			wantRequest:  &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{wantSet("x-a", "1")}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name: "value is read when raw_value is empty",
			request: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "instructions", Value: `{"addHeaders":{"x-v":"from-value"}}`},
			}},
			wantRequest:  &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{wantSet("x-v", "from-value")}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name: "raw_value wins over value",
			request: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "instructions", Value: `{"addHeaders":{"x-v":"value"}}`, RawValue: []byte(`{"addHeaders":{"x-v":"raw"}}`)},
			}},
			wantRequest:  &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{wantSet("x-v", "raw")}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:         "header key is matched case-insensitively",
			request:      headerMap("Instructions", `{"addHeaders":{"x-a":"1"}}`),
			wantRequest:  &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{wantSet("x-a", "1")}}},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:         "no instructions header",
			request:      headerMap(":path", "/", "x-other", "1"),
			response:     headerMap(":status", "200"),
			wantRequest:  &extprocv3.CommonResponse{},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:         "empty instructions header",
			request:      headerMap("instructions", ""),
			response:     headerMap("instructions", "  "),
			wantRequest:  &extprocv3.CommonResponse{},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:         "null means no instructions",
			request:      headerMap("instructions", "null"),
			response:     headerMap("instructions", " null "),
			wantRequest:  &extprocv3.CommonResponse{},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:         "empty object and unknown keys mean no change",
			request:      headerMap("instructions", `{}`),
			response:     headerMap("instructions", `{"somethingElse":[1,2]}`),
			wantRequest:  &extprocv3.CommonResponse{},
			wantResponse: &extprocv3.CommonResponse{},
		},
		{
			name:         "null fields mean no change",
			request:      headerMap("instructions", `{"addHeaders":null,"removeHeaders":null,"setBody":null,"setTrailers":null}`),
			wantRequest:  &extprocv3.CommonResponse{},
			wantResponse: &extprocv3.CommonResponse{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			response := tt.response
			if response == nil {
				response = headerMap(":status", "200")
			}
			got, err := exchange(t, conn, reqHeaders(tt.request, true), respHeaders(response, true))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			assertAnswers(t, got, []*extprocv3.ProcessingResponse{
				wantReqHeaders(tt.wantRequest), wantRespHeaders(tt.wantResponse),
			})
		})
	}
}

func TestMalformedInstructionsEndTheStream(t *testing.T) {
	t.Parallel()
	conn := startServer(t, Options{})

	tests := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
		// answers is how many messages are answered before the failing one.
		answers  int
		wantText string
	}{
		{
			name:     "truncated JSON on request headers",
			msgs:     []*extprocv3.ProcessingRequest{reqHeaders(headerMap("instructions", `{"addHeaders":`), true)},
			wantText: "request headers",
		},
		{
			name:     "not an object",
			msgs:     []*extprocv3.ProcessingRequest{reqHeaders(headerMap("instructions", `"add"`), true)},
			wantText: "request headers",
		},
		{
			name:     "wrong type for a known key",
			msgs:     []*extprocv3.ProcessingRequest{reqHeaders(headerMap("instructions", `{"removeHeaders":"x-a"}`), true)},
			wantText: "request headers",
		},
		{
			name: "malformed on response headers after a good request",
			msgs: []*extprocv3.ProcessingRequest{
				reqHeaders(headerMap(":path", "/"), true),
				respHeaders(headerMap("instructions", `not json`), true),
			},
			answers:  1,
			wantText: "response headers",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := exchange(t, conn, tt.msgs...)
			if len(got) != tt.answers {
				t.Errorf("got %d answers before the error, want %d:\n%s", len(got), tt.answers, formatAll(got))
			}
			st, ok := status.FromError(err)
			if !ok || st.Code() != codes.InvalidArgument {
				t.Fatalf("got error %v, want a gRPC InvalidArgument status", err)
			}
			if msg := st.Message(); !strings.Contains(msg, tt.wantText) || !strings.Contains(msg, "instructions") || !strings.Contains(msg, "JSON") {
				t.Errorf("status message %q should name the phase (%q), the instructions header and JSON", msg, tt.wantText)
			}
		})
	}
}

func TestAddHeaderOption(t *testing.T) {
	t.Parallel()
	conn := startServer(t, Options{AddHeaders: [][2]string{{"x-sluice-demo", "on"}, {"x-extra", "a:b"}}})

	got, err := exchange(t, conn,
		reqHeaders(headerMap(":path", "/"), true),
		respHeaders(headerMap(":status", "200"), true),
	)
	if err != nil {
		t.Fatalf("exchange without instructions: %v", err)
	}
	assertAnswers(t, got, []*extprocv3.ProcessingResponse{
		wantReqHeaders(&extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
			wantSet("x-sluice-demo", "on"), wantSet("x-extra", "a:b"),
		}}}),
		// The option is about requests only.
		wantRespHeaders(&extprocv3.CommonResponse{}),
	})

	got, err = exchange(t, conn,
		reqHeaders(headerMap("instructions", `{"addHeaders":{"extproc":"true"},"removeHeaders":["x-r"]}`), true),
	)
	if err != nil {
		t.Fatalf("exchange with instructions: %v", err)
	}
	// The option's headers come first so that instructions naming the same header win.
	assertAnswers(t, got, []*extprocv3.ProcessingResponse{
		wantReqHeaders(&extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
			SetHeaders: []*corev3.HeaderValueOption{
				wantSet("x-sluice-demo", "on"), wantSet("x-extra", "a:b"), wantSet("extproc", "true"),
			},
			RemoveHeaders: []string{"x-r"},
		}}),
	})
}
