package extproc

import (
	"context"
	"log/slog"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

const redacted = "[redacted]"

// logMessage logs one message at debug level, with the values of the pool's redacted
// headers replaced. It costs nothing unless debug logging is on.
func (in *instance) logMessage(direction string, p phase, msg proto.Message) {
	log := in.f.log
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	c := proto.Clone(msg)
	redactMessage(c, in.f.pool.redact)
	kind := "answer"
	if p < numPhases {
		kind = p.String()
	}
	log.Debug("ext_proc "+direction, "request_id", in.ex.ID, "phase", kind,
		"message", prototext.MarshalOptions{}.Format(c))
}

func redactMessage(m proto.Message, names map[string]bool) {
	switch v := m.(type) {
	case *extprocv3.ProcessingRequest:
		redactMap(v.GetRequestHeaders().GetHeaders(), names)
		redactMap(v.GetResponseHeaders().GetHeaders(), names)
		redactMap(v.GetRequestTrailers().GetTrailers(), names)
		redactMap(v.GetResponseTrailers().GetTrailers(), names)
	case *extprocv3.ProcessingResponse:
		redactMutation(v.GetRequestHeaders().GetResponse().GetHeaderMutation(), names)
		redactMutation(v.GetResponseHeaders().GetResponse().GetHeaderMutation(), names)
		redactMutation(v.GetRequestBody().GetResponse().GetHeaderMutation(), names)
		redactMutation(v.GetResponseBody().GetResponse().GetHeaderMutation(), names)
		redactMutation(v.GetRequestTrailers().GetHeaderMutation(), names)
		redactMutation(v.GetResponseTrailers().GetHeaderMutation(), names)
		redactMutation(v.GetImmediateResponse().GetHeaders(), names)
		redactMap(v.GetStreamedImmediateResponse().GetHeadersResponse().GetHeaders(), names)
	}
}

func redactMap(hm *corev3.HeaderMap, names map[string]bool) {
	for _, hv := range hm.GetHeaders() {
		redactValue(hv, names)
	}
}

func redactMutation(m *extprocv3.HeaderMutation, names map[string]bool) {
	for _, o := range m.GetSetHeaders() {
		redactValue(o.GetHeader(), names)
	}
}

func redactValue(hv *corev3.HeaderValue, names map[string]bool) {
	if hv == nil || !names[strings.ToLower(hv.GetKey())] {
		return
	}
	if hv.Value != "" {
		hv.Value = redacted
	}
	if len(hv.RawValue) > 0 {
		hv.RawValue = []byte(redacted)
	}
}
