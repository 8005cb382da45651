package extproc

import (
	"bytes"
	"net/http"
	"strconv"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
	"github.com/sluice-gateway/sluice/internal/filter"
)

// immediateAnswer handles an immediate_response or streamed_immediate_response answer;
// ok is false for any other answer.
func (in *instance) immediateAnswer(p phase, ans *extprocv3.ProcessingResponse) (*filter.LocalReply, *failure, bool) {
	switch r := ans.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		if in.set().DisableImmediateResponse {
			return nil, spurious("immediate_response while disabled"), true
		}
		in.takeMetadata(ans)
		lr, f := in.localReply(r.ImmediateResponse)
		return lr, f, true
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		if in.set().DisableImmediateResponse {
			return nil, spurious("streamed_immediate_response while disabled"), true
		}
		in.takeMetadata(ans)
		lr, f := in.streamedLocalReply(p, r.StreamedImmediateResponse)
		return lr, f, true
	case nil:
		return nil, spurious("empty answer to %s", p), true
	}
	return nil, nil, false
}

// localReply turns an ImmediateResponse into the local reply, ending the processor's
// part in the exchange: no response message is sent for a local reply.
func (in *instance) localReply(r *extprocv3.ImmediateResponse) (*filter.LocalReply, *failure) {
	code := int(r.GetStatus().GetCode())
	if code < 200 || code > 999 {
		code = http.StatusOK
	}
	h := make(http.Header)
	out, err := mutate.ApplyLocal(h, r.GetHeaders(), in.set().Rules)
	for range out.Rejected {
		in.f.m.failed(kindMutation)
	}
	if err != nil {
		return nil, mutationFailure(err)
	}
	if gs := r.GetGrpcStatus(); gs != nil {
		h.Set("Grpc-Status", strconv.FormatUint(uint64(gs.GetStatus()), 10))
	}
	h.Del("Content-Length")
	in.endForLocalReply()
	details := r.GetDetails()
	if details == "" {
		details = "ext_proc_immediate_response"
	}
	return &filter.LocalReply{Status: code, Header: h, Body: r.GetBody(), Details: details}, nil
}

// streamedLocalReply collects a streamed immediate response (headers, then body chunks,
// then optionally trailers) into one local reply. The filter seam has no streamed local
// reply, so the body is gathered, bounded by maxBufferSize; trailers are dropped.
func (in *instance) streamedLocalReply(p phase, r *extprocv3.StreamedImmediateResponse) (*filter.LocalReply, *failure) {
	hdrs := r.GetHeadersResponse()
	if hdrs == nil {
		return nil, spurious("streamed_immediate_response must start with headers")
	}
	h := make(http.Header)
	code := http.StatusOK
	for _, hv := range hdrs.GetHeaders().GetHeaders() {
		v := mutate.HeaderValue(hv)
		if hv.GetKey() == ":status" {
			if c, err := strconv.Atoi(v); err == nil && c >= 200 && c <= 999 {
				code = c
			}
			continue
		}
		if len(hv.GetKey()) > 0 && hv.GetKey()[0] == ':' {
			continue
		}
		h.Add(hv.GetKey(), v)
	}
	if err := validLocalHeaders(h, in); err != nil {
		return nil, err
	}
	var body bytes.Buffer
	eos := hdrs.GetEndOfStream()
	for !eos {
		ans, f := in.recv(p, in.set().MessageTimeout)
		if f != nil {
			return nil, f
		}
		sir := ans.GetStreamedImmediateResponse()
		if sir == nil {
			return nil, spurious("%T during a streamed immediate response", ans.GetResponse())
		}
		switch {
		case sir.GetBodyResponse() != nil:
			body.Write(sir.GetBodyResponse().GetBody())
			eos = sir.GetBodyResponse().GetEndOfStream()
			if int64(body.Len()) > in.set().MaxBufferSize {
				return nil, &failure{kindTooLarge, errBodyTooLarge}
			}
		case sir.GetTrailersResponse() != nil:
			eos = true
		default:
			return nil, spurious("headers twice in a streamed immediate response")
		}
	}
	in.endForLocalReply()
	return &filter.LocalReply{Status: code, Header: h, Body: body.Bytes(), Details: "ext_proc_streamed_immediate_response"}, nil
}

// validLocalHeaders runs headers of a streamed immediate response through the mutation
// rules, as those of an immediate response are.
func validLocalHeaders(h http.Header, in *instance) *failure {
	m := &extprocv3.HeaderMutation{}
	clean := make(http.Header, len(h))
	for k, vs := range h {
		for _, v := range vs {
			m.SetHeaders = append(m.SetHeaders, setHeader(k, v, true))
		}
	}
	if _, err := mutate.ApplyLocal(clean, m, in.set().Rules); err != nil {
		return mutationFailure(err)
	}
	for k := range h {
		delete(h, k)
	}
	for k, v := range clean {
		h[k] = v
	}
	return nil
}

// endForLocalReply ends the processor's part: the stream is half-closed and nothing else
// will be sent, whatever the rest of the exchange does.
func (in *instance) endForLocalReply() {
	in.f.m.immediateReply()
	in.bypass = true
	if in.st != nil && !in.st.finished {
		in.st.closeSend()
		in.lastAnswered = true
	}
}
