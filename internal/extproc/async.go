package extproc

import (
	"context"
	"sync"
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
		defer close(r.dead)
		defer func() {
			if t := st.deadline.Load(); t != nil {
				t.Stop()
			}
		}()
		for {
			ans, err := st.cs.Recv()
			if err != nil {
				r.err = err
				st.cancel(errStreamDone)
				return
			}
			in.logMessage("recv", numPhases, ans)
			if discard {
				continue
			}
			ch := r.route(ans)
			select {
			case ch <- ans:
			case <-st.ctx.Done():
				r.err = context.Cause(st.ctx)
				return
			}
		}
	}()
}

func (r *receiver) route(ans *extprocv3.ProcessingResponse) chan *extprocv3.ProcessingResponse {
	switch ans.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestBody, *extprocv3.ProcessingResponse_RequestTrailers:
		return r.req
	case *extprocv3.ProcessingResponse_ResponseBody, *extprocv3.ProcessingResponse_ResponseTrailers:
		return r.resp
	case *extprocv3.ProcessingResponse_RequestHeaders, *extprocv3.ProcessingResponse_ResponseHeaders:
		return r.ctrl
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owner
}

func (r *receiver) setOwner(ch chan *extprocv3.ProcessingResponse) {
	r.mu.Lock()
	r.owner = ch
	r.mu.Unlock()
}

// asyncRecv waits for the next answer of p's kind; timeout <= 0 waits without limit.
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

func (in *instance) waitOn(ch chan *extprocv3.ProcessingResponse, timeout time.Duration) (*extprocv3.ProcessingResponse, *failure) {
	st := in.st
	r := st.async
	r.setOwner(ch)
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case ans := <-ch:
		for ans.GetOverrideMessageTimeout() != nil {
			// Not armed per message here; the value has nothing to extend.
			select {
			case ans = <-ch:
			case <-r.dead:
				return nil, classify(st.ctx, in.ctx, r.err)
			}
		}
		return ans, nil
	case <-r.dead:
		return nil, classify(st.ctx, in.ctx, r.err)
	case <-tc:
		st.cancel(errMessageTimeout)
		return nil, &failure{kindTimeout, errMessageTimeout}
	}
}

// asyncDone half-closes an asynchronous stream; the receiver ends it when the processor
// does, and the stream is reset after grace at the latest.
func (in *instance) asyncDone(st *stream, grace time.Duration) {
	st.closeSend()
	deferClose(st, grace)
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
