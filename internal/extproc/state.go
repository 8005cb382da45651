package extproc

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
	"github.com/sluice-gateway/sluice/internal/extproc/settings"
	"github.com/sluice-gateway/sluice/internal/filter"
)

const bodyNone = extprocfilterv3.ProcessingMode_NONE

// instance is the ext_proc state of one request.
//
// Concurrency: Request, Response and Done run on the request's goroutine, but the request
// body reader may still be read by the upstream transport while Response runs, so every
// exchange with the processor holds mu. Done never waits for mu: it cancels the stream,
// which ends any exchange in flight.
type instance struct {
	f    *factory
	ex   *filter.Exchange
	mode settings.Mode
	// ctx is the client's request context: the stream is its child, so a client that
	// goes away cancels the stream at once.
	ctx  context.Context
	resp *http.Response

	mu sync.Mutex
	st *stream
	// stp mirrors st for Done, which does not take mu.
	stp  atomic.Pointer[stream]
	done atomic.Bool

	// bypass: the processor is out of the exchange (clean close, fail-open, immediate
	// response); everything passes through untouched.
	bypass bool
	// lastAnswered: every message that will ever be sent has its answer and the stream
	// is half-closed; Done may wait briefly for the processor's end of the stream.
	lastAnswered bool
	// duplexStarted: a full-duplex body is under way; fail-open is no longer possible.
	duplexStarted bool
	// reqDone, respDone: that direction will send nothing more.
	reqDone, respDone bool

	sentFirst, sentRequestAttrs, sentResponseAttrs bool
	// early is the body pumped before the headers answer, if any; Done stops its pump.
	early *earlyBody
	// onSent runs once right after the next message is sent (early bodies start there).
	onSent func()
	// obsq feeds the sender of an observability-mode stream.
	obsq chan *extprocv3.ProcessingRequest
}

func (in *instance) set() *settings.Settings { return in.f.set }

// Request sends the request headers (and a buffered body) and installs the body
// processing chosen by the mode.
func (in *instance) Request(ctx context.Context, ex *filter.Exchange) *filter.LocalReply {
	in.ctx = ctx
	if in.set().Observability {
		return in.observeRequest(ex.Request)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	req := ex.Request
	noBody := req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0
	if in.mode.RequestHeader {
		msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{
				Headers:     mutate.RequestHeaders(req, ex.Scheme, in.set().Forward, in.set().HeaderValueField),
				EndOfStream: noBody,
			}}}
		if !noBody && in.mode.RequestBody == bodyStreamed && in.set().SendBodyWithoutWaitingForHeaderResponse {
			return in.requestEarly(req, msg)
		}
		ans, f := in.roundTrip(phaseRequestHeaders, msg, false)
		if f != nil {
			return in.fail(f)
		}
		if lr, f := in.headersAnswer(phaseRequestHeaders, ans, noBody); f != nil || lr != nil {
			return in.reply(lr, f)
		}
	}
	if !in.bypass && !noBody {
		if lr, f := in.requestBody(req); f != nil || lr != nil {
			return in.reply(lr, f)
		}
	} else {
		in.reqDone = true
	}
	in.maybeFinish()
	return nil
}

// Response sends the response headers (and a buffered body) and installs the body
// processing chosen by the mode.
func (in *instance) Response(ctx context.Context, ex *filter.Exchange, resp *http.Response) *filter.LocalReply {
	if in.ctx == nil {
		in.ctx = ctx
	}
	if in.set().Observability {
		return in.observeResponse(resp)
	}
	in.lockFor(ctx)
	defer in.mu.Unlock()
	in.resp = resp
	if in.bypass || in.done.Load() {
		return nil
	}
	noBody := resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 ||
		ex.Request.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	if !noBody && in.mode.ResponseTrailer && resp.Trailer == nil {
		// The data plane copies resp.Trailer after the body: a processor can only add
		// trailers if the map exists.
		resp.Trailer = make(http.Header)
	}
	if in.mode.ResponseHeader {
		last := !in.set().AllowModeOverride && in.reqDone &&
			(noBody || in.mode.ResponseBody == bodyNone && !in.mode.ResponseTrailer)
		msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{
				Headers:     mutate.ResponseHeaders(resp, in.set().Forward, in.set().HeaderValueField),
				EndOfStream: noBody,
			}}}
		ans, f := in.roundTrip(phaseResponseHeaders, msg, last)
		if f != nil {
			return in.fail(f)
		}
		if lr, f := in.headersAnswer(phaseResponseHeaders, ans, noBody); f != nil || lr != nil {
			return in.reply(lr, f)
		}
	}
	if !in.bypass && !noBody {
		if lr, f := in.responseBody(resp); f != nil || lr != nil {
			return in.reply(lr, f)
		}
	} else {
		in.respDone = true
	}
	in.maybeFinish()
	return nil
}

// lockFor takes mu for Response. A request body reader may hold it while the processor
// has a chunk; if ctx (the request's, which a route timeout cancels) ends meanwhile, the
// upstream exchange that body was for is over: the stream is reset so that the reply
// goes out now rather than when the processor answers or its message timeout fires.
func (in *instance) lockFor(ctx context.Context) {
	if in.mu.TryLock() {
		return
	}
	stop := context.AfterFunc(ctx, in.abortStream)
	in.mu.Lock()
	stop()
}

// Done releases the stream. After a complete exchange it half-closes and gives the
// processor CloseGrace to end the stream itself; otherwise it resets the stream.
func (in *instance) Done(err error) {
	if !in.done.CompareAndSwap(false, true) {
		return
	}
	if in.set().Observability {
		in.observeDone()
		return
	}
	if in.early != nil {
		in.early.halt()
	}
	if !in.mu.TryLock() {
		// A body reader is still exchanging a message: cancelling ends it.
		if st := in.stp.Load(); st != nil {
			st.cancel(errStreamDone)
		}
		return
	}
	defer in.mu.Unlock()
	st := in.st
	if st == nil || st.finished {
		return
	}
	if st.async != nil {
		in.asyncDone(st, in.f.pool.opts.CloseGrace)
		return
	}
	if in.lastAnswered && err == nil {
		st.drain(in.f.pool.opts.CloseGrace)
		return
	}
	st.closeSend()
	st.abort()
}

// maybeFinish half-closes the stream once nothing more will be sent in either direction.
func (in *instance) maybeFinish() {
	if in.st == nil || in.st.finished || in.bypass || !in.reqDone {
		return
	}
	if !in.respDone && (in.resp != nil || in.mode.ResponseHeader || in.mode.ResponseBody != bodyNone || in.mode.ResponseTrailer) {
		return
	}
	in.st.closeSend()
	in.lastAnswered = true
}

// reply turns the outcome of an answer into the result of Request or Response.
func (in *instance) reply(lr *filter.LocalReply, f *failure) *filter.LocalReply {
	if f != nil {
		return in.fail(f)
	}
	return lr
}

// fail decides what a failure does to the request: nil continues without the processor.
// This and classify are the only places that know the fail-open rules.
func (in *instance) fail(f *failure) *filter.LocalReply {
	log := in.f.log
	switch f.kind {
	case kindClosed:
		// The processor is done with this request: not an error in either mode.
		log.Debug("ext_proc stream closed by the processor", "request_id", in.ex.ID)
		in.bypass = true
		if in.st != nil {
			in.st.abort()
		}
		return nil
	case kindCanceled:
		in.bypass = true
		if in.st != nil {
			in.st.abort()
		}
		return errorReply(f, in.set().StatusOnError)
	}
	in.f.m.failed(f.kind)
	if in.st != nil {
		in.st.closeSend()
		in.st.abort()
	}
	in.bypass = true
	if in.set().FailOpen && f.kind != kindMutation && !in.duplexStarted {
		// Per-request failures are counted in metrics and named in the local reply's
		// details; a log line per request would flood during an outage.
		log.Debug("ext_proc failed, continuing without it (FailOpen)", "request_id", in.ex.ID, "error", f)
		in.f.m.openPass()
		return nil
	}
	log.Debug("ext_proc failed", "request_id", in.ex.ID, "error", f)
	return errorReply(f, in.set().StatusOnError)
}

// roundTrip sends msg and waits for its answer on the caller's goroutine. last
// half-closes the stream right after msg, so that the processor's end of the stream
// arrives with the answer.
func (in *instance) roundTrip(p phase, msg *extprocv3.ProcessingRequest, last bool) (*extprocv3.ProcessingResponse, *failure) {
	if in.done.Load() {
		return nil, &failure{kindCanceled, errStreamDone}
	}
	if in.st == nil {
		st, err := in.f.open(in.ctx)
		if err != nil {
			return nil, classify(context.Background(), in.ctx, err)
		}
		in.st = st
		in.stp.Store(st)
	}
	st := in.st
	in.decorate(p, msg)
	in.logMessage("send", p, msg)
	start := time.Now()
	in.f.m.sent(p)
	if st.async != nil {
		st.async.expect(p)
	}
	if err := st.send(msg); err != nil {
		st.finished = true
		return nil, classify(st.ctx, in.ctx, err)
	}
	if last {
		st.closeSend()
	}
	if in.onSent != nil {
		in.onSent()
		in.onSent = nil
	}
	ans, f := in.recv(p, in.set().MessageTimeout)
	if f == nil {
		in.f.m.answered(p, start)
	}
	return ans, f
}

// recv waits up to timeout for the next answer, honouring the first valid
// override_message_timeout.
func (in *instance) recv(p phase, timeout time.Duration) (*extprocv3.ProcessingResponse, *failure) {
	st := in.st
	if st.async != nil {
		return in.asyncRecv(p, timeout)
	}
	st.arm(timeout)
	overridden := false
	for {
		ans, err := st.cs.Recv()
		if err != nil {
			st.disarm()
			st.finished = true
			return nil, classify(st.ctx, in.ctx, err)
		}
		in.logMessage("recv", p, ans)
		if ot := ans.GetOverrideMessageTimeout(); ot != nil {
			// Its other fields are ignored; only the first per message counts.
			if d := ot.AsDuration(); !overridden && d >= time.Millisecond && d <= in.set().MaxMessageTimeout {
				overridden = true
				if !st.disarm() {
					return nil, &failure{kindTimeout, errMessageTimeout}
				}
				st.arm(d)
			}
			continue
		}
		if !st.disarm() {
			return nil, &failure{kindTimeout, errMessageTimeout}
		}
		return ans, nil
	}
}

const bodyStreamed = extprocfilterv3.ProcessingMode_STREAMED
