package extproc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/extproc/attrs"
	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
	"github.com/sluice-gateway/sluice/internal/extproc/settings"
	"github.com/sluice-gateway/sluice/internal/filter"
)

// attributesKey is where Envoy puts the attributes it sends.
const attributesKey = "envoy.filters.http.ext_proc"

// metadataNamespace receives dynamic metadata values that are not namespaced structs.
const metadataNamespace = "envoy.filters.http.ext_proc"

// decorate adds what only some messages carry: protocol_config on the first, attributes
// and metadata on the first of each direction.
func (in *instance) decorate(p phase, msg *extprocv3.ProcessingRequest) {
	set := in.set()
	msg.ObservabilityMode = set.Observability
	if !in.sentFirst {
		in.sentFirst = true
		msg.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:                         in.mode.RequestBody,
			ResponseBodyMode:                        in.mode.ResponseBody,
			SendBodyWithoutWaitingForHeaderResponse: set.SendBodyWithoutWaitingForHeaderResponse,
		}
	}
	var prog *attrs.Program
	if p.isRequest() {
		if in.sentRequestAttrs {
			return
		}
		in.sentRequestAttrs = true
		prog = set.RequestAttributes
	} else {
		if in.sentResponseAttrs {
			return
		}
		in.sentResponseAttrs = true
		prog = set.ResponseAttributes
	}
	md := in.ex.Metadata()
	if prog == nil && len(set.MetadataContext) == 0 && len(md) == 0 {
		// The common case: nothing to evaluate, nothing to forward.
		return
	}
	input := &attrs.Input{Exchange: in.ex, Request: in.ex.Request, Response: in.resp}
	if a := prog.Eval(input); a != nil && len(a.Fields) > 0 {
		msg.Attributes = map[string]*structpb.Struct{attributesKey: a}
	}
	if len(set.MetadataContext) == 0 && len(md) == 0 {
		return
	}
	fm := make(map[string]*structpb.Struct, len(set.MetadataContext)+len(md))
	for ns, s := range md {
		fm[ns] = s
	}
	for ns, prog := range set.MetadataContext {
		if s := prog.Eval(input); s != nil {
			fm[ns] = s
		}
	}
	if len(fm) > 0 {
		msg.MetadataContext = &corev3.Metadata{FilterMetadata: fm}
	}
}

// takeMetadata keeps the dynamic metadata of an answer with the request: each top-level
// field names a namespace, as in Envoy.
func (in *instance) takeMetadata(ans *extprocv3.ProcessingResponse) {
	dm := ans.GetDynamicMetadata()
	if dm == nil || in.set().Observability {
		return
	}
	var loose *structpb.Struct
	for ns, v := range dm.Fields {
		if s := v.GetStructValue(); s != nil {
			in.ex.SetMetadata(ns, s)
			continue
		}
		if loose == nil {
			loose = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		}
		loose.Fields[ns] = v
	}
	in.ex.SetMetadata(metadataNamespace, loose)
}

// headersAnswer applies the answer to a headers message. noBody says the message had
// end_of_stream set.
func (in *instance) headersAnswer(p phase, ans *extprocv3.ProcessingResponse, noBody bool) (lr *filter.LocalReply, f *failure) {
	if lr, f, ok := in.immediateAnswer(p, ans); ok {
		return lr, f
	}
	var hr *extprocv3.HeadersResponse
	if p == phaseRequestHeaders {
		hr = ans.GetRequestHeaders()
	} else {
		hr = ans.GetResponseHeaders()
	}
	if hr == nil {
		return nil, spurious("answer %T to %s", ans.GetResponse(), p)
	}
	in.takeMetadata(ans)
	cr := hr.GetResponse()
	replace := cr.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	before := in.bodyLength(p)
	if f := in.applyHeaders(p, cr.GetHeaderMutation(), replace); f != nil {
		return nil, f
	}
	defer func() {
		if f == nil && lr == nil {
			f = in.checkLength(p, before)
		}
	}()
	if p == phaseRequestHeaders {
		in.routeCache(cr.GetClearRouteCache(), true)
	}
	in.overrideMode(p, ans.GetModeOverride())
	if f := in.addTrailers(p, cr.GetTrailers(), noBody); f != nil {
		return nil, f
	}

	bm := cr.GetBodyMutation()
	switch {
	case replace:
		// The answer is the whole message: the body is replaced (or added) and neither
		// body nor trailers of this direction go to the processor any more. Without a
		// body_mutation the body goes on unprocessed, as in Envoy.
		if bm != nil {
			in.replaceBody(p, bm.GetBody(), true)
		}
		if p == phaseRequestHeaders {
			in.mode.RequestBody, in.mode.RequestTrailer = bodyNone, false
		} else {
			in.mode.ResponseBody, in.mode.ResponseTrailer = bodyNone, false
		}
	case bm.GetMutation() != nil && !noBody:
		// A body rewrite in a CONTINUE headers answer (processors written for Envoy send
		// one); an empty body_mutation{} is no change.
		if _, ok := bm.GetMutation().(*extprocv3.BodyMutation_StreamedResponse); ok {
			return nil, spurious("streamed_response in a %s answer", p)
		}
		in.replaceBody(p, bm.GetBody(), false)
		if p == phaseRequestHeaders {
			in.mode.RequestBody = bodyNone
		} else {
			in.mode.ResponseBody = bodyNone
		}
	}
	return nil, nil
}

// bodyLength is the declared length of p's body: its Content-Length, or -1.
func (in *instance) bodyLength(p phase) int64 {
	if p.isRequest() {
		return in.ex.Request.ContentLength
	}
	return in.resp.ContentLength
}

// checkLength fails the request when a headers answer set a content-length that the
// body, going on unchanged (no body mode, no replacement), does not have: sent as is, the
// upstream or the client would wait for bytes that never come or read the rest of the
// body as the next message. A length the processor removed is fine (the body is then
// re-framed); a length it set on a body of unknown length cannot be kept either. A
// response to HEAD, or a 1xx, 204 or 304, declares a length without carrying a body.
func (in *instance) checkLength(p phase, before int64) *failure {
	after := in.bodyLength(p)
	if after < 0 || after == before {
		return nil
	}
	mode := in.mode.RequestBody
	done := in.reqDone
	if !p.isRequest() {
		mode, done = in.mode.ResponseBody, in.respDone
		if c := in.resp.StatusCode; in.ex.Request.Method == http.MethodHead || c < 200 || c == http.StatusNoContent || c == http.StatusNotModified {
			return nil
		}
	}
	if mode != bodyNone || done {
		// The body goes to the processor (whose answers re-frame it or are checked
		// against the length, 3.6), or was replaced with a body of this length.
		return nil
	}
	dir := "request"
	if !p.isRequest() {
		dir = "response"
	}
	if before < 0 {
		return &failure{kindMutation, fmt.Errorf("content-length %d set on a %s body of unknown length", after, dir)}
	}
	return &failure{kindMutation, fmt.Errorf("content-length %d does not match the %d-byte %s body", after, before, dir)}
}

// addTrailers adds the trailers of a headers answer (CommonResponse.trailers, which
// Envoy does not implement but processors such as the documented sample send) to the
// trailers of p's direction. Without a body there is nothing to carry them; an empty
// map is no change.
func (in *instance) addTrailers(p phase, tm *corev3.HeaderMap, noBody bool) *failure {
	if len(tm.GetHeaders()) == 0 || noBody {
		return nil
	}
	m := &extprocv3.HeaderMutation{}
	for _, hv := range tm.GetHeaders() {
		m.SetHeaders = append(m.SetHeaders, &corev3.HeaderValueOption{Header: hv,
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	var h *http.Header
	if p == phaseRequestHeaders {
		if in.ex.Request.ContentLength >= 0 {
			// A request body of known length cannot carry trailers on HTTP/1.
			return nil
		}
		h = &in.ex.Request.Trailer
	} else {
		h = &in.resp.Trailer
	}
	if *h == nil {
		*h = make(http.Header)
	}
	return in.applyTrailers(*h, m)
}

// applyHeaders applies a header mutation to the held headers of p's direction.
func (in *instance) applyHeaders(p phase, hm *extprocv3.HeaderMutation, allowMethod bool) *failure {
	if hm == nil {
		return nil
	}
	var out mutate.Outcome
	var err error
	if p.isRequest() {
		req := in.ex.Request
		out, err = mutate.ApplyRequest(req, hm, in.set().Rules, allowMethod)
	} else {
		out, err = mutate.ApplyResponse(in.resp, hm, in.set().Rules)
	}
	for range out.Rejected {
		in.f.m.failed(kindMutation)
	}
	if err != nil {
		return mutationFailure(err)
	}
	return nil
}

// replaceBody swaps p's body for b. With replace (CONTINUE_AND_REPLACE) Content-Length
// is dropped as in Envoy; a CONTINUE rewrite gets the new length.
func (in *instance) replaceBody(p phase, b []byte, replace bool) {
	var body io.ReadCloser = http.NoBody
	if len(b) > 0 {
		body = io.NopCloser(bytes.NewReader(b))
	}
	n := int64(len(b))
	if replace && n > 0 {
		n = -1
	}
	if p.isRequest() {
		req := in.ex.Request
		if req.Body != nil {
			_ = req.Body.Close()
		}
		req.Body, req.ContentLength = body, n
		req.Header.Del("Content-Length")
		if req.GetBody != nil {
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		}
		in.reqDone = true
	} else {
		if in.resp.Body != nil {
			_ = in.resp.Body.Close()
		}
		in.resp.Body, in.resp.ContentLength = body, n
		in.resp.Header.Del("Content-Length")
		in.respDone = true
	}
}

// routeCache sets ClearRouteCache per routeCacheAction (request direction only).
func (in *instance) routeCache(asked, headersAnswer bool) {
	switch in.set().RouteCacheAction {
	case v1alpha1.RouteCacheRetain:
	case v1alpha1.RouteCacheClear:
		if headersAnswer {
			in.ex.ClearRouteCache = true
		}
	default:
		if asked {
			in.ex.ClearRouteCache = true
		}
	}
}

// overrideMode applies a mode_override of a headers answer when the policy allows it.
// request_header_mode is ignored: the request headers are behind us.
func (in *instance) overrideMode(p phase, pm *extprocfilterv3.ProcessingMode) {
	set := in.set()
	if pm == nil || !set.AllowModeOverride || set.SendBodyWithoutWaitingForHeaderResponse {
		return
	}
	next := in.mode
	next.ResponseHeader = headerMode(pm.GetResponseHeaderMode(), next.ResponseHeader)
	next.RequestTrailer = headerMode(pm.GetRequestTrailerMode(), next.RequestTrailer)
	next.ResponseTrailer = headerMode(pm.GetResponseTrailerMode(), next.ResponseTrailer)
	next.RequestBody, next.ResponseBody = pm.GetRequestBodyMode(), pm.GetResponseBodyMode()
	if !overrideAllowed(next, set.AllowedOverrideModes) {
		in.f.log.Debug("ext_proc mode_override not in allowedOverrideModes", "request_id", in.ex.ID)
		return
	}
	if p == phaseResponseHeaders {
		// Too late for the request: keep what it was.
		next.RequestBody, next.RequestTrailer = in.mode.RequestBody, in.mode.RequestTrailer
	}
	if set.Observability && !observableBody(next.RequestBody, next.ResponseBody) {
		return
	}
	in.mode = next
}

func headerMode(m extprocfilterv3.ProcessingMode_HeaderSendMode, cur bool) bool {
	switch m {
	case extprocfilterv3.ProcessingMode_SEND:
		return true
	case extprocfilterv3.ProcessingMode_SKIP:
		return false
	}
	return cur
}

// overrideAllowed compares whole modes but for the request header mode, which an
// override cannot change.
func overrideAllowed(m settings.Mode, allowed []settings.Mode) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, a := range allowed {
		a.RequestHeader = m.RequestHeader
		if a == m {
			return true
		}
	}
	return false
}

func observableBody(modes ...extprocfilterv3.ProcessingMode_BodySendMode) bool {
	for _, m := range modes {
		if m != bodyNone && m != extprocfilterv3.ProcessingMode_STREAMED {
			return false
		}
	}
	return true
}
