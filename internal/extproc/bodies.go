package extproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/filter"
)

var errBodyTooLarge = errors.New("body larger than maxBufferSize")

// dir gathers what differs between the request and the response body paths.
type dir struct {
	body, trailers phase
	// tooLarge is the status of a Buffered body over the limit: 413 for requests, 500
	// for responses (Envoy's choices).
	tooLarge int
}

var (
	requestDir  = dir{phaseRequestBody, phaseRequestTrailers, http.StatusRequestEntityTooLarge}
	responseDir = dir{phaseResponseBody, phaseResponseTrailers, http.StatusInternalServerError}
)

func bodyMsg(p phase, b []byte, eos bool) *extprocv3.ProcessingRequest {
	hb := &extprocv3.HttpBody{Body: b, EndOfStream: eos}
	if p == phaseRequestBody {
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: hb}}
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: hb}}
}

// requestBody installs the request body processing of the current mode. Buffered modes
// finish here, with the headers still held; streamed modes wrap req.Body.
func (in *instance) requestBody(req *http.Request) (*filter.LocalReply, *failure) {
	if in.reqDone {
		return nil, nil
	}
	mode, trailers := in.mode.RequestBody, in.mode.RequestTrailer
	// Trailers are announced before the body (net/http fills the keys in): only then is
	// a trailers message expected, and the last body message does not end the stream.
	expectTrailers := trailers && len(req.Trailer) > 0
	get := func() http.Header { return req.Trailer }
	switch mode {
	case bodyNone:
		if !trailers {
			in.reqDone = true
			return nil, nil
		}
		req.Body = &passBody{in: in, d: requestDir, src: req.Body, trailers: get}
	case extprocfilterv3.ProcessingMode_BUFFERED, extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		return in.bufferBody(requestDir, &req.Body, &req.ContentLength, get, expectTrailers, mode)
	case extprocfilterv3.ProcessingMode_STREAMED:
		req.Body = in.newStreamBody(requestDir, req.Body, req.ContentLength, get, expectTrailers)
		req.ContentLength = -1
	case extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		body, f := in.newDuplexBody(requestDir, req.Body, get)
		if f != nil {
			return nil, f
		}
		req.Body, req.ContentLength = body, -1
	default:
		return nil, spurious("unsupported request body mode %v", mode)
	}
	req.Header.Del("Content-Length")
	return nil, nil
}

// responseBody is requestBody for the response.
func (in *instance) responseBody(resp *http.Response) (*filter.LocalReply, *failure) {
	if in.respDone {
		return nil, nil
	}
	mode, trailers := in.mode.ResponseBody, in.mode.ResponseTrailer
	expectTrailers := trailers && len(resp.Trailer) > 0
	get := func() http.Header { return resp.Trailer }
	switch mode {
	case bodyNone:
		if !trailers {
			in.respDone = true
			return nil, nil
		}
		resp.Body = &passBody{in: in, d: responseDir, src: resp.Body, trailers: get}
	case extprocfilterv3.ProcessingMode_BUFFERED, extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		return in.bufferBody(responseDir, &resp.Body, &resp.ContentLength, get, expectTrailers, mode)
	case extprocfilterv3.ProcessingMode_STREAMED:
		resp.Body = in.newStreamBody(responseDir, resp.Body, resp.ContentLength, get, expectTrailers)
		resp.ContentLength = -1
	case extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		body, f := in.newDuplexBody(responseDir, resp.Body, get)
		if f != nil {
			return nil, f
		}
		resp.Body, resp.ContentLength = body, -1
	default:
		return nil, spurious("unsupported response body mode %v", mode)
	}
	return nil, nil
}

// bufferBody reads the body (up to maxBufferSize), sends it and applies the answer
// while the headers are still held, then the trailers.
func (in *instance) bufferBody(d dir, body *io.ReadCloser, length *int64, trailers func() http.Header, expectTrailers bool, mode extprocfilterv3.ProcessingMode_BodySendMode) (*filter.LocalReply, *failure) {
	limit := in.set().MaxBufferSize
	partial := mode == extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL
	src := *body
	if !partial && *length > limit {
		return filter.Reply(d.tooLarge, "ext_proc_buffer_limit_exceeded", ""), nil
	}
	buf, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		return nil, in.bodyReadFailure(err)
	}
	more := int64(len(buf)) > limit
	var rest io.Reader
	if more {
		if !partial {
			return filter.Reply(d.tooLarge, "ext_proc_buffer_limit_exceeded", ""), nil
		}
		// BufferedPartial: what is beyond the limit streams past the processor.
		rest = io.MultiReader(bytes.NewReader(buf[limit:]), src)
		buf = buf[:limit]
	}
	headersSent := in.mode.RequestHeader
	if d.body == phaseResponseBody {
		headersSent = in.mode.ResponseHeader
	}
	ans, f := in.roundTrip(d.body, bodyMsg(d.body, buf, !more && !expectTrailers), false)
	if f != nil {
		return nil, f
	}
	out, lr, f := in.bodyAnswer(d, ans, buf, true)
	if f != nil || lr != nil {
		return lr, f
	}
	if !more && expectTrailers && !in.bypass {
		if lr, f := in.sendTrailers(d, trailers()); f != nil || lr != nil {
			return lr, f
		}
	}
	switch {
	case partial || !headersSent:
		*length = -1
	case *length >= 0 && *length != int64(len(out)):
		// Headers were sent with the body held: the processor had to fix
		// Content-Length when it changed the body (3.6).
		return nil, &failure{kindMutation, fmt.Errorf("content-length %d does not match the %d-byte body", *length, len(out))}
	}
	var r io.Reader = bytes.NewReader(out)
	if rest != nil {
		r = io.MultiReader(r, rest)
	}
	*body = readCloser{r, src}
	if d.body == phaseRequestBody {
		in.reqDone = true
	} else {
		in.respDone = true
	}
	return nil, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// bodyAnswer applies the answer to a body message of chunk; held says the headers of the
// direction have not gone out, so header mutations still apply. It returns the chunk to
// pass on.
func (in *instance) bodyAnswer(d dir, ans *extprocv3.ProcessingResponse, chunk []byte, held bool) ([]byte, *filter.LocalReply, *failure) {
	if lr, f, ok := in.immediateAnswer(d.body, ans); ok {
		return nil, lr, f
	}
	var br *extprocv3.BodyResponse
	if d.body == phaseRequestBody {
		br = ans.GetRequestBody()
	} else {
		br = ans.GetResponseBody()
	}
	if br == nil {
		return nil, nil, spurious("answer %T to %s", ans.GetResponse(), d.body)
	}
	in.takeMetadata(ans)
	cr := br.GetResponse()
	if held {
		if f := in.applyHeaders(d.body, cr.GetHeaderMutation(), false); f != nil {
			return nil, nil, f
		}
		if d.body == phaseRequestBody {
			// Nothing went upstream yet: a processor routing on the body may re-route.
			in.routeCache(cr.GetClearRouteCache(), false)
		}
	}
	switch m := cr.GetBodyMutation().GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return m.Body, nil, nil
	case *extprocv3.BodyMutation_ClearBody:
		if m.ClearBody {
			return nil, nil, nil
		}
	case *extprocv3.BodyMutation_StreamedResponse:
		return nil, nil, spurious("streamed_response outside full-duplex mode")
	}
	return chunk, nil, nil
}

func trailersMsg(d dir, h http.Header, in *instance) *extprocv3.ProcessingRequest {
	tm := trailersMap(h, in)
	if d.trailers == phaseRequestTrailers {
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{Trailers: tm}}}
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: tm}}}
}

// sendTrailers sends the trailers message of d and applies the answer to h.
func (in *instance) sendTrailers(d dir, h http.Header) (*filter.LocalReply, *failure) {
	ans, f := in.roundTrip(d.trailers, trailersMsg(d, h, in), false)
	if f != nil {
		return nil, f
	}
	return in.trailersAnswer(d, ans, h)
}

func (in *instance) trailersAnswer(d dir, ans *extprocv3.ProcessingResponse, h http.Header) (*filter.LocalReply, *failure) {
	if lr, f, ok := in.immediateAnswer(d.trailers, ans); ok {
		return lr, f
	}
	var tr *extprocv3.TrailersResponse
	if d.trailers == phaseRequestTrailers {
		tr = ans.GetRequestTrailers()
	} else {
		tr = ans.GetResponseTrailers()
	}
	if tr == nil {
		return nil, spurious("answer %T to %s", ans.GetResponse(), d.trailers)
	}
	in.takeMetadata(ans)
	if hm := tr.GetHeaderMutation(); hm != nil && h != nil {
		if f := in.applyTrailers(h, hm); f != nil {
			return nil, f
		}
	}
	return nil, nil
}

// bodyReadFailure classifies an error reading the client's or upstream's body: it is
// not the processor's fault, so it never fails open.
func (in *instance) bodyReadFailure(err error) *failure {
	if in.ctx.Err() != nil {
		return &failure{kindCanceled, err}
	}
	return &failure{kindCanceled, fmt.Errorf("reading body: %w", err)}
}
