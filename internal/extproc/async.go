package extproc

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// receiver is the one goroutine that receives on a stream whose answers do not follow
// its messages one for one (full-duplex bodies, observability mode). It sorts answers by
// direction so that a body reader and Response can each wait for their own.
type receiver struct {
	// req and resp carry body and trailers answers of each direction; ctrl carries
	// headers answers. Immediate responses go to whichever waits (owner).
	req, resp, ctrl chan *extprocv3.ProcessingResponse
	// dead is closed when the stream ends; err says why.
	dead chan struct{}
	err  error

	mu    sync.Mutex
	owner chan *extprocv3.ProcessingResponse
	// reqOpen, respOpen: body or trailers messages of that direction went out on the
	// stream, so their answers are awaited on req or resp. Body answers of a direction
	// with none out are out of turn: they go to whoever waits (owner), which sees them
	// as spurious.
	reqOpen, respOpen atomic.Bool
	// dropRequest: nobody reads request body answers any more (the request body was
	// replaced while chunks were on their way); late ones are dropped.
	dropRequest atomic.Bool
}

// The channels are small: a reader that stops reading stops the receiver, and gRPC's
// flow control then stops the processor.
const receiverQueue = 4

// startReceiver switches st to asynchronous receiving. discard drops every answer
// (observability mode).
func (in *instance) startReceiver(st *stream, discard bool) {
	r := &receiver{
		req: make(chan *extprocv3.ProcessingResponse, receiverQueue), resp: make(chan *extprocv3.ProcessingResponse, receiverQueue),
		ctrl: make(chan *extprocv3.ProcessingResponse, receiverQueue), dead: make(chan struct{}),
	}
	r.owner = r.ctrl
	st.async = r
	pool := in.f.pool
	pool.bg.Add(1)
	go func() {
		defer pool.bg.Done()
		r.err = r.run(in, st, discard)
		if t := st.deadline.Load(); t != nil {
			t.Stop()
		}
		// dead closes before the stream's context is cancelled, so that whoever wakes on
		// the cancellation finds r.err set rather than the bare cancellation cause.
		close(r.dead)
		st.cancel(errStreamDone)
	}()
}

// run delivers answers until the stream ends, and returns why it ended.
func (r *receiver) run(in *instance, st *stream, discard bool) error {
	for {
		ans, err := st.cs.Recv()
		if err != nil {
			return err
		}
		in.logMessage("recv", numPhases, ans)
		if discard {
			continue
		}
		ch := r.route(ans)
		if ch == r.req && r.dropRequest.Load() {
			continue
		}
		select {
		case ch <- ans:
		case <-st.ctx.Done():
			return context.Cause(st.ctx)
		}
	}
}

func (r *receiver) route(ans *extprocv3.ProcessingResponse) chan *extprocv3.ProcessingResponse {
	switch ans.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestBody, *extprocv3.ProcessingResponse_RequestTrailers:
		if r.reqOpen.Load() {
			return r.req
		}
	case *extprocv3.ProcessingResponse_ResponseBody, *extprocv3.ProcessingResponse_ResponseTrailers:
		if r.respOpen.Load() {
			return r.resp
		}
	case *extprocv3.ProcessingResponse_RequestHeaders, *extprocv3.ProcessingResponse_ResponseHeaders:
		return r.ctrl
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owner
}

// expect marks p's direction as one whose body answers are awaited (a message of it
// goes out on this stream).
func (r *receiver) expect(p phase) {
	switch p {
	case phaseRequestBody, phaseRequestTrailers:
		r.reqOpen.Store(true)
	case phaseResponseBody, phaseResponseTrailers:
		r.respOpen.Store(true)
	}
}

func (r *receiver) setOwner(ch chan *extprocv3.ProcessingResponse) {
	r.mu.Lock()
	r.owner = ch
	r.mu.Unlock()
}

// asyncRecv waits for the next answer of p's kind, at most timeout (<= 0 times out at
// once, as in the synchronous case).
func (in *instance) asyncRecv(p phase, timeout time.Duration) (*extprocv3.ProcessingResponse, *failure) {
	r := in.st.async
	ch := r.ctrl
	switch p {
	case phaseRequestBody, phaseRequestTrailers:
		ch = r.req
	case phaseResponseBody, phaseResponseTrailers:
		ch = r.resp
	}
	return in.waitOn(ch, timeout)
}

// waitOn waits for the next answer on ch, honouring the first valid
// override_message_timeout as recv does.
func (in *instance) waitOn(ch chan *extprocv3.ProcessingResponse, timeout time.Duration) (*extprocv3.ProcessingResponse, *failure) {
	st := in.st
	r := st.async
	r.setOwner(ch)
	if timeout <= 0 {
		st.cancel(errMessageTimeout)
		return nil, &failure{kindTimeout, errMessageTimeout}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	overridden := false
	for {
		var ans *extprocv3.ProcessingResponse
		select {
		case ans = <-ch:
		case <-r.dead:
			// Answers the processor sent before it ended the stream come first.
			var ok bool
			if ans, ok = queued(ch); !ok {
				return nil, classify(st.ctx, in.ctx, r.err)
			}
		case <-t.C:
			st.cancel(errMessageTimeout)
			return nil, &failure{kindTimeout, errMessageTimeout}
		}
		if ot := ans.GetOverrideMessageTimeout(); ot != nil {
			// Its other fields are ignored; only the first valid one counts.
			if d := ot.AsDuration(); !overridden && d >= time.Millisecond && d <= in.set().MaxMessageTimeout {
				overridden = true
				t.Reset(d)
			}
			continue
		}
		return ans, nil
	}
}

// asyncDone half-closes an asynchronous stream; the receiver ends it when the processor
// does, and the stream is reset after grace at the latest.
func (in *instance) asyncDone(st *stream, grace time.Duration) {
	st.closeSend()
	deferClose(st, grace)
}

// discardRequest drops the request body answers waiting and all later ones.
func (r *receiver) discardRequest() {
	r.dropRequest.Store(true)
	for {
		if _, ok := queued(r.req); !ok {
			return
		}
	}
}

// queued returns an answer already waiting on ch, if any: the receiver delivers every
// answer before it reports the stream's end, so a reader that sees dead must look here
// first.
func queued(ch chan *extprocv3.ProcessingResponse) (*extprocv3.ProcessingResponse, bool) {
	select {
	case ans := <-ch:
		return ans, true
	default:
		return nil, false
	}
}

// errOr returns why the stream ended, if the receiver has seen it end, else fallback.
func (r *receiver) errOr(fallback error) error {
	select {
	case <-r.dead:
		return r.err
	default:
		return fallback
	}
}
