package extproc

import (
	"context"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/filter"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// earlyBody is a STREAMED request body sent with send_body_without_waiting_for_header_response:
// a pump goroutine sends chunks as they arrive, before the headers answer, and queues
// them; the reader takes them in order with their answers. The queue bounds how far the
// pump runs ahead (back-pressure).
type earlyBody struct {
	in             *instance
	d              dir
	src            io.ReadCloser
	trailers       func() http.Header
	remaining      int64
	expectTrailers bool

	queue chan earlyItem
	// pass: the processor is out of the exchange; the pump only reads.
	pass atomic.Bool
	// stop ends the pump's wait on a full queue once nobody will read it.
	stop     chan struct{}
	stopOnce sync.Once

	out []byte
	err error
}

type earlyItem struct {
	chunk    []byte
	end      bool
	trailers bool
	err      error
}

const earlyDepth = 4

func (in *instance) newEarlyBody(d dir, src io.ReadCloser, length int64, trailers func() http.Header, expectTrailers bool) *earlyBody {
	return &earlyBody{in: in, d: d, src: src, remaining: length, trailers: trailers,
		expectTrailers: expectTrailers, queue: make(chan earlyItem, earlyDepth), stop: make(chan struct{})}
}

func (b *earlyBody) halt() { b.stopOnce.Do(func() { close(b.stop) }) }

func (b *earlyBody) start() {
	pool := b.in.f.pool
	pool.bg.Add(1)
	go func() {
		defer pool.bg.Done()
		b.pump()
	}()
}

func (b *earlyBody) push(it earlyItem) bool {
	select {
	case b.queue <- it:
		return true
	case <-b.stop:
		return false
	}
}

func (b *earlyBody) pump() {
	st := b.in.st
	for {
		buf := make([]byte, streamChunk)
		var n int
		var err error
		if b.remaining != 0 {
			n, err = b.src.Read(buf)
		} else {
			err = io.EOF
		}
		if err != nil && err != io.EOF {
			// The reader resets the stream when it gets here; nobody may (a headers
			// answer that replaced the body closed src).
			b.push(earlyItem{err: err})
			return
		}
		if b.remaining > 0 {
			b.remaining -= int64(n)
		}
		end := err == io.EOF || b.remaining == 0
		if n == 0 && !end {
			continue
		}
		if !b.pass.Load() {
			msg := bodyMsg(b.d.body, buf[:n], end && !b.expectTrailers)
			b.in.logMessage("send", b.d.body, msg)
			b.in.f.m.sent(b.d.body)
			if st.send(msg) != nil {
				b.pass.Store(true)
			}
		}
		if !b.push(earlyItem{chunk: buf[:n], end: end}) || !end {
			if !end {
				continue
			}
			return
		}
		if b.expectTrailers && !b.pass.Load() {
			b.in.mu.Lock()
			msg := trailersMsg(b.d, b.trailers(), b.in)
			b.in.mu.Unlock()
			b.in.logMessage("send", b.d.trailers, msg)
			b.in.f.m.sent(b.d.trailers)
			if st.send(msg) == nil {
				b.push(earlyItem{trailers: true})
			}
		}
		return
	}
}

func (b *earlyBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		b.next()
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *earlyBody) next() {
	in := b.in
	var it earlyItem
	got := false
	if !b.pass.Load() {
		select {
		case it = <-b.queue:
			got = true
		case <-in.st.ctx.Done():
			in.mu.Lock()
			lr := in.fail(classify(in.st.ctx, in.ctx, in.st.async.errOr(context.Cause(in.st.ctx))))
			in.mu.Unlock()
			if lr != nil {
				b.err = lr
				b.halt()
				return
			}
			// Failed open: the pump goes on reading, and what it read passes on.
			b.pass.Store(true)
		}
	}
	if !got {
		select {
		case it = <-b.queue:
		case <-b.stop:
			b.err = io.ErrUnexpectedEOF
			return
		}
	}
	if it.err != nil {
		b.err = it.err
		in.abortStream()
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.bypass || in.done.Load() || b.pass.Load() {
		b.pass.Store(true)
		b.out = it.chunk
		if it.end {
			b.err = io.EOF
		}
		return
	}
	if it.trailers {
		ans, f := in.recv(b.d.trailers, in.set().MessageTimeout)
		if f == nil {
			lrep, f2 := in.trailersAnswer(b.d, ans, b.trailers())
			if f2 != nil {
				lrep = in.fail(f2)
			}
			if lrep != nil {
				b.err = lrep
				return
			}
		} else if lrep := in.fail(f); lrep != nil {
			b.err = lrep
			return
		}
		b.err = io.EOF
		in.directionDone(b.d)
		return
	}
	ans, f := in.recv(b.d.body, in.set().MessageTimeout)
	if f != nil {
		b.failed(in.fail(f), it)
		return
	}
	out, lr, f := in.bodyAnswer(b.d, ans, it.chunk, false)
	if f != nil {
		lr = in.fail(f)
	}
	if lr != nil || in.bypass {
		b.failed(lr, it)
		return
	}
	b.out = out
	if it.end && !b.expectTrailers {
		b.err = io.EOF
		in.directionDone(b.d)
	}
}

// failed fails the body with lr, or (fail-open) passes this and every later chunk on.
// lr is a pointer, not an error: a nil reply must not become a non-nil error.
func (b *earlyBody) failed(lr *filter.LocalReply, it earlyItem) {
	if lr != nil {
		b.err = lr
		return
	}
	b.pass.Store(true)
	b.out = it.chunk
	if it.end {
		b.err = io.EOF
	}
}

func (b *earlyBody) Close() error {
	b.halt()
	return b.src.Close()
}

// requestEarly sends the request headers and streams the body right behind them, then
// applies the headers answer (3.8, send_body_without_waiting_for_header_response).
func (in *instance) requestEarly(req *http.Request, msg *extprocv3.ProcessingRequest) *filter.LocalReply {
	expectTrailers := in.mode.RequestTrailer && len(req.Trailer) > 0
	b := in.newEarlyBody(requestDir, req.Body, req.ContentLength, func() http.Header { return req.Trailer }, expectTrailers)
	in.early = b
	in.onSent = func() {
		in.startReceiver(in.st, false)
		in.st.async.reqOpen.Store(true)
		b.start()
	}
	ans, f := in.roundTrip(phaseRequestHeaders, msg, false)
	started := in.onSent == nil
	in.onSent = nil
	var lr *filter.LocalReply
	if f == nil {
		lr, f = in.headersAnswer(phaseRequestHeaders, ans, false)
	}
	if f != nil {
		lr = in.fail(f)
	}
	if lr != nil {
		return lr
	}
	if in.bypass {
		if started {
			// Failed open: what the pump already read still has to go upstream.
			b.pass.Store(true)
			req.Body = b
		}
		return nil
	}
	if !in.reqDone && in.mode.RequestBody != bodyStreamed {
		// CONTINUE_AND_REPLACE without a body: what the pump read passes on unprocessed.
		b.pass.Store(true)
		in.st.async.discardRequest()
		req.Body = b
		in.reqDone = true
	} else if !in.reqDone {
		req.Body, req.ContentLength = b, -1
		req.Header.Del("Content-Length")
	} else if started {
		// The answer replaced the body (3.11): the pump stops sending it, and the
		// answers to chunks already sent are late body data, discarded.
		b.pass.Store(true)
		b.halt()
		in.st.async.discardRequest()
	}
	in.maybeFinish()
	return nil
}
