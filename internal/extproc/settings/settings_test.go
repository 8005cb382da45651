package settings

import (
	"errors"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		spec      v1alpha1.ExtProc
		wantPath  string
		wantInMsg string
	}{
		{"failureMode enum", v1alpha1.ExtProc{FailureMode: "Sometimes"}, "spec.extProc.failureMode", `supported values: "FailClosed", "FailOpen"`},
		{"statusOnError low", v1alpha1.ExtProc{StatusOnError: ptr[int32](199)}, "spec.extProc.statusOnError", "between 200 and 599"},
		{"statusOnError high", v1alpha1.ExtProc{StatusOnError: ptr[int32](600)}, "spec.extProc.statusOnError", "600"},
		{"messageTimeout negative", v1alpha1.ExtProc{MessageTimeout: dur(-time.Second)}, "spec.extProc.messageTimeout", "must be 0s or more"},
		{"maxMessageTimeout negative", v1alpha1.ExtProc{MaxMessageTimeout: dur(-time.Millisecond)}, "spec.extProc.maxMessageTimeout", `"-1ms": must be 0s or more`},
		{"requestHeaderMode enum", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{RequestHeaderMode: "Always"}}, "spec.extProc.processingOptions.requestHeaderMode", `supported values: "Send", "Skip"`},
		{"responseHeaderMode enum", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{ResponseHeaderMode: "send"}}, "spec.extProc.processingOptions.responseHeaderMode", `"Send"`},
		{"requestTrailerMode enum", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{RequestTrailerMode: "X"}}, "spec.extProc.processingOptions.requestTrailerMode", `"Skip"`},
		{"responseTrailerMode enum", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{ResponseTrailerMode: "X"}}, "spec.extProc.processingOptions.responseTrailerMode", `"Skip"`},
		{"requestBodyMode enum", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{RequestBodyMode: "Chunked"}}, "spec.extProc.processingOptions.requestBodyMode", `"BufferedPartial"`},
		{"responseBodyMode enum", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{ResponseBodyMode: "GRPC"}}, "spec.extProc.processingOptions.responseBodyMode", `"FullDuplexStreamed"`},
		{"full duplex request without trailers", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{RequestBodyMode: v1alpha1.BodyFullDuplexStreamed}}, "spec.extProc.processingOptions.requestTrailerMode", "must be Send when requestBodyMode is FullDuplexStreamed"},
		{"full duplex response with Skip", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{ResponseBodyMode: v1alpha1.BodyFullDuplexStreamed, ResponseTrailerMode: v1alpha1.Skip}}, "spec.extProc.processingOptions.responseTrailerMode", `"Skip": must be Send`},
		{"fail open with full duplex", v1alpha1.ExtProc{FailureMode: v1alpha1.FailOpen, ProcessingOptions: &v1alpha1.ProcessingOptions{RequestBodyMode: v1alpha1.BodyFullDuplexStreamed, RequestTrailerMode: v1alpha1.Send}}, "spec.extProc.failureMode", "must be FailClosed when a body mode is FullDuplexStreamed"},
		{"observability with Buffered", v1alpha1.ExtProc{ObservabilityMode: true, ProcessingOptions: &v1alpha1.ProcessingOptions{RequestBodyMode: v1alpha1.BodyBuffered}}, "spec.extProc.processingOptions.requestBodyMode", "must be None or Streamed when observabilityMode is true"},
		{"observability with BufferedPartial", v1alpha1.ExtProc{ObservabilityMode: true, ProcessingOptions: &v1alpha1.ProcessingOptions{ResponseBodyMode: v1alpha1.BodyBufferedPartial}}, "spec.extProc.processingOptions.responseBodyMode", `"BufferedPartial": must be None or Streamed`},
		{"observability with FullDuplexStreamed", v1alpha1.ExtProc{ObservabilityMode: true, ProcessingOptions: &v1alpha1.ProcessingOptions{ResponseBodyMode: v1alpha1.BodyFullDuplexStreamed, ResponseTrailerMode: v1alpha1.Send}}, "spec.extProc.processingOptions.responseBodyMode", "None or Streamed"},
		{"allowedOverrideModes without allowModeOverride", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{AllowedOverrideModes: []v1alpha1.ProcessingMode{{}}}}, "spec.extProc.processingOptions.allowedOverrideModes", "unless allowModeOverride is true"},
		{"allowedOverrideModes entry enum", v1alpha1.ExtProc{ProcessingOptions: &v1alpha1.ProcessingOptions{AllowModeOverride: true, AllowedOverrideModes: []v1alpha1.ProcessingMode{{}, {ResponseBodyMode: "Fast"}}}}, "spec.extProc.processingOptions.allowedOverrideModes[1].responseBodyMode", `"Fast": supported values`},
		{"maxBufferSize zero", v1alpha1.ExtProc{MaxBufferSize: ptr(resource.MustParse("0"))}, "spec.extProc.maxBufferSize", "must be greater than 0"},
		{"maxBufferSize negative", v1alpha1.ExtProc{MaxBufferSize: ptr(resource.MustParse("-1Ki"))}, "spec.extProc.maxBufferSize", `"-1Ki"`},
		{"allowExpression RE2", v1alpha1.ExtProc{MutationRules: &v1alpha1.MutationRules{AllowExpression: "x-(a"}}, "spec.extProc.mutationRules.allowExpression", "must be an RE2 regular expression: error parsing regexp"},
		{"disallowExpression RE2 (no lookahead)", v1alpha1.ExtProc{MutationRules: &v1alpha1.MutationRules{DisallowExpression: "x(?!y)"}}, "spec.extProc.mutationRules.disallowExpression", "RE2"},
		{"forward allowedHeaders re:", v1alpha1.ExtProc{ForwardRules: &v1alpha1.ForwardRules{AllowedHeaders: []string{"x-a", "re:[b"}}}, "spec.extProc.forwardRules.allowedHeaders[1]", "must be an RE2 regular expression"},
		{"forward disallowedHeaders re:", v1alpha1.ExtProc{ForwardRules: &v1alpha1.ForwardRules{DisallowedHeaders: []string{"re:*"}}}, "spec.extProc.forwardRules.disallowedHeaders[0]", "RE2"},
		{"forward bad name", v1alpha1.ExtProc{ForwardRules: &v1alpha1.ForwardRules{DisallowedHeaders: []string{"bad name"}}}, "spec.extProc.forwardRules.disallowedHeaders[0]", `must be a header name, or an RE2 regular expression prefixed with "re:"`},
		{"requestAttributes CEL", v1alpha1.ExtProc{RequestAttributes: map[string]string{"p": "request.path +"}}, "spec.extProc.requestAttributes[p]", "must be a valid CEL expression"},
		{"requestAttributes response.*", v1alpha1.ExtProc{RequestAttributes: map[string]string{"c": "response.code"}}, "spec.extProc.requestAttributes[c]", "only available in responseAttributes"},
		{"responseAttributes CEL", v1alpha1.ExtProc{ResponseAttributes: map[string]string{"c": "response.code ==="}}, "spec.extProc.responseAttributes[c]", "valid CEL"},
		{"responseAttributes undeclared", v1alpha1.ExtProc{ResponseAttributes: map[string]string{"c": "upstream.address"}}, "spec.extProc.responseAttributes[c]", "undeclared reference"},
		{"metadataContext CEL", v1alpha1.ExtProc{MetadataContext: map[string]map[string]string{"ns": {"k": "request.("}}}, "spec.extProc.metadataContext[ns][k]", "valid CEL"},
		{"metadataContext response.*", v1alpha1.ExtProc{MetadataContext: map[string]map[string]string{"ns": {"k": "response.code"}}}, "spec.extProc.metadataContext[ns][k]", "only available in responseAttributes"},
		{"grpcInitialMetadata upper case", v1alpha1.ExtProc{GRPCInitialMetadata: map[string]string{"X-Tenant": "a"}}, "spec.extProc.grpcInitialMetadata[X-Tenant]", "lower-case letters, digits"},
		{"grpcInitialMetadata reserved", v1alpha1.ExtProc{GRPCInitialMetadata: map[string]string{"grpc-timeout": "1S"}}, "spec.extProc.grpcInitialMetadata[grpc-timeout]", `must not start with "grpc-"`},
		{"grpcInitialMetadata pseudo", v1alpha1.ExtProc{GRPCInitialMetadata: map[string]string{":path": "/x"}}, "spec.extProc.grpcInitialMetadata[:path]", "gRPC metadata key"},
		{"grpcInitialMetadata value", v1alpha1.ExtProc{GRPCInitialMetadata: map[string]string{"x-a": "a\nb"}}, "spec.extProc.grpcInitialMetadata[x-a]", "printable ASCII"},
		{"routeCacheAction enum", v1alpha1.ExtProc{RouteCacheAction: "Flush"}, "spec.extProc.routeCacheAction", `"Default", "Clear", "Retain"`},
		{"headerValueField enum", v1alpha1.ExtProc{HeaderValueField: "raw_value"}, "spec.extProc.headerValueField", `"RawValue", "Value", "Both"`},
	}
	root := field.NewPath("spec", "extProc")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errs := Validate(&tt.spec, root)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			if errs[0].Field != tt.wantPath {
				t.Errorf("path %q, want %q", errs[0].Field, tt.wantPath)
			}
			if !strings.Contains(errs[0].Error(), tt.wantInMsg) {
				t.Errorf("message %q does not say %q", errs[0].Error(), tt.wantInMsg)
			}
		})
	}
}

func TestValidateValid(t *testing.T) {
	t.Parallel()
	for name, spec := range map[string]*v1alpha1.ExtProc{
		"nil":      nil,
		"empty":    {},
		"disabled": {Disabled: true, FailureMode: "garbage"},
		"full": {
			FailureMode: v1alpha1.FailClosed, StatusOnError: ptr[int32](503), MessageTimeout: dur(0), MaxMessageTimeout: dur(time.Second),
			ProcessingOptions: &v1alpha1.ProcessingOptions{RequestBodyMode: v1alpha1.BodyFullDuplexStreamed, RequestTrailerMode: v1alpha1.Send,
				AllowModeOverride: true, AllowedOverrideModes: []v1alpha1.ProcessingMode{{ResponseBodyMode: v1alpha1.BodyStreamed}}},
			MaxBufferSize:       ptr(resource.MustParse("4Mi")),
			MutationRules:       &v1alpha1.MutationRules{AllowExpression: "x-.*", DisallowExpression: "x-secret"},
			ForwardRules:        &v1alpha1.ForwardRules{AllowedHeaders: []string{"Content-Type", "re:x-.*"}},
			RequestAttributes:   map[string]string{"path": "request.path"},
			ResponseAttributes:  map[string]string{"code": "response.code", "path": "request.path"},
			MetadataContext:     map[string]map[string]string{"ns": {"route": "xds.route_name"}},
			GRPCInitialMetadata: map[string]string{"x-tenant": "acme", "x-blob-bin": "\x00\x01", "a.b_c": "v"},
			ObservabilityMode:   false, RouteCacheAction: v1alpha1.RouteCacheClear, HeaderValueField: v1alpha1.HeaderValueBoth,
		},
		"observability streamed": {ObservabilityMode: true, ProcessingOptions: &v1alpha1.ProcessingOptions{RequestBodyMode: v1alpha1.BodyStreamed}},
	} {
		if errs := Validate(spec, nil); len(errs) != 0 {
			t.Errorf("%s: %v", name, errs)
		}
	}
}

func TestCompileDefaults(t *testing.T) {
	t.Parallel()
	for name, spec := range map[string]*v1alpha1.ExtProc{"nil": nil, "empty": {}} {
		s, err := Compile(spec)
		if err != nil {
			t.Fatal(err)
		}
		if s.FailOpen || s.StatusOnError != 500 || s.MessageTimeout != 200*time.Millisecond || s.MaxMessageTimeout != 0 ||
			s.Mode != (Mode{RequestHeader: true, ResponseHeader: true}) || s.MaxBufferSize != 1<<20 || s.Rules == nil ||
			s.Forward != nil || s.RequestAttributes != nil || s.ResponseAttributes != nil || s.MetadataContext != nil ||
			s.InitialMetadata != nil || s.RouteCacheAction != v1alpha1.RouteCacheDefault || s.HeaderValueField != v1alpha1.HeaderValueRaw ||
			s.AllowModeOverride || s.AllowedOverrideModes != nil || s.Disabled {
			t.Errorf("%s: defaults wrong: %+v", name, s)
		}
	}
	s, err := Compile(&v1alpha1.ExtProc{Disabled: true, FailureMode: "garbage"})
	if err != nil || !s.Disabled {
		t.Errorf("disabled: %+v %v", s, err)
	}
}

func TestCompileValues(t *testing.T) {
	t.Parallel()
	s, err := Compile(&v1alpha1.ExtProc{
		FailureMode: v1alpha1.FailOpen, StatusOnError: ptr[int32](503), MessageTimeout: dur(0), MaxMessageTimeout: dur(time.Second),
		ProcessingOptions: &v1alpha1.ProcessingOptions{RequestHeaderMode: v1alpha1.Skip, ResponseBodyMode: v1alpha1.BodyBuffered,
			ResponseTrailerMode: v1alpha1.Send, AllowModeOverride: true,
			AllowedOverrideModes: []v1alpha1.ProcessingMode{{ResponseBodyMode: v1alpha1.BodyStreamed}}},
		MaxBufferSize:       ptr(resource.MustParse("2Ki")),
		ForwardRules:        &v1alpha1.ForwardRules{DisallowedHeaders: []string{"cookie"}},
		RequestAttributes:   map[string]string{"p": "request.path"},
		ResponseAttributes:  map[string]string{"c": "response.code"},
		MetadataContext:     map[string]map[string]string{"ns": {"r": "xds.route_name"}, "empty": {}},
		GRPCInitialMetadata: map[string]string{"x-a": "1"},
		ObservabilityMode:   false, DisableImmediateResponse: true, RouteCacheAction: v1alpha1.RouteCacheRetain,
		SendBodyWithoutWaitingForHeaderResponse: true, HeaderValueField: v1alpha1.HeaderValueString,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantMode := Mode{ResponseHeader: true, ResponseTrailer: true, ResponseBody: extprocfilterv3.ProcessingMode_BUFFERED}
	if !s.FailOpen || s.StatusOnError != 503 || s.MessageTimeout != 0 || s.MaxMessageTimeout != time.Second || s.Mode != wantMode ||
		!s.AllowModeOverride || len(s.AllowedOverrideModes) != 1 || s.AllowedOverrideModes[0].ResponseBody != extprocfilterv3.ProcessingMode_STREAMED ||
		s.MaxBufferSize != 2048 || s.Forward == nil || s.Forward.Allowed("cookie") || s.RequestAttributes == nil || s.ResponseAttributes == nil ||
		len(s.MetadataContext) != 1 || s.MetadataContext["ns"] == nil || s.InitialMetadata["x-a"] != "1" || s.Observability ||
		!s.DisableImmediateResponse || s.RouteCacheAction != v1alpha1.RouteCacheRetain || !s.SendBodyWithoutWaitingForHeaderResponse ||
		s.HeaderValueField != v1alpha1.HeaderValueString {
		t.Errorf("compiled wrong: %+v", s)
	}
}

func TestCompileErrorsJoined(t *testing.T) {
	t.Parallel()
	_, err := Compile(&v1alpha1.ExtProc{FailureMode: "x", StatusOnError: ptr[int32](1)})
	if err == nil {
		t.Fatal("no error")
	}
	var fe *field.Error
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "failureMode") || !strings.Contains(err.Error(), "statusOnError") {
		t.Errorf("error %v does not join both field errors", err)
	}
}

func TestModeAllowedAndOverride(t *testing.T) {
	t.Parallel()
	cur := DefaultMode
	streamed := Mode{RequestHeader: true, ResponseHeader: true, ResponseBody: extprocfilterv3.ProcessingMode_STREAMED}
	if !cur.Allowed(streamed, nil) {
		t.Error("empty allow-list refused")
	}
	if !cur.Allowed(streamed, []Mode{{ResponseHeader: true, ResponseBody: extprocfilterv3.ProcessingMode_STREAMED}}) {
		t.Error("request header mode was compared")
	}
	if cur.Allowed(streamed, []Mode{DefaultMode}) {
		t.Error("mode outside the list allowed")
	}
	got := cur.Override(&extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   extprocfilterv3.ProcessingMode_SKIP, // ignored
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SEND,
		ResponseBodyMode:    extprocfilterv3.ProcessingMode_STREAMED,
	})
	want := Mode{RequestHeader: true, ResponseHeader: true, ResponseTrailer: true, ResponseBody: extprocfilterv3.ProcessingMode_STREAMED}
	if got != want {
		t.Errorf("Override = %+v, want %+v", got, want)
	}
	if cur.Override(nil) != cur {
		t.Error("nil override changed the mode")
	}
	if p := want.Proto(); p.GetRequestTrailerMode() != extprocfilterv3.ProcessingMode_SKIP || p.GetResponseTrailerMode() != extprocfilterv3.ProcessingMode_SEND ||
		p.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_STREAMED {
		t.Errorf("Proto = %v", p)
	}
}
