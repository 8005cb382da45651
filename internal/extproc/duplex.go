package extproc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// duplexBody is a FULL_DUPLEX_STREAMED body: a pump goroutine sends what it reads from
// src to the processor, the stream's receiver collects the processor's streamed_response
// chunks, and Read returns those. Chunks are M:N; no per-message timer is armed.
type duplexBody struct {
	in       *instance
	d        dir
	src      io.ReadCloser
	trailers func() http.Header
	ch       chan *extprocv3.ProcessingResponse

	out     []byte
	err     error
	started bool
}

func (in *instance) newDuplexBody(d dir, src io.ReadCloser, trailers func() http.Header) (io.ReadCloser, *failure) {
	if in.st == nil {
		st, err := in.f.open(in.ctx)
		if err != nil {
			return nil, classify(context.Background(), in.ctx, err)
		}
		in.st = st
		in.stp.Store(st)
	}
	st := in.st
	if st.async == nil {
		in.startReceiver(st, false)
	}
	in.duplexStarted = true
	b := &duplexBody{in: in, d: d, src: src, trailers: trailers, ch: st.async.req}
	if d.body == phaseResponseBody {
		b.ch = st.async.resp
		st.async.respOpen.Store(true)
	} else {
		st.async.reqOpen.Store(true)
	}
	return b, nil
}

// start runs the pump on the first Read rather than in Request or Response: the data
// plane is then done reading the headers and trailer map it hands the transport, which
// the source body fills at its end.
func (b *duplexBody) start() {
	pool := b.in.f.pool
	pool.bg.Add(1)
	go func() {
		defer pool.bg.Done()
		b.pump()
	}()
}

// pump is the only sender of body messages of its direction.
func (b *duplexBody) pump() {
	st := b.in.st
	buf := make([]byte, streamChunk)
	for {
		n, err := b.src.Read(buf)
		if err != nil && err != io.EOF {
			st.cancel(errStreamDone)
			return
		}
		end := err == io.EOF
		var msgs []*extprocv3.ProcessingRequest
		h := http.Header(nil)
		withTrailers := false
		if end {
			// Under mu: the trailers were written by this goroutine (the source body at
			// its end) and are read by the reader's goroutine when the answer comes.
			b.in.mu.Lock()
			h = b.trailers()
			withTrailers = hasValues(h)
			b.in.mu.Unlock()
		}
		if n > 0 || (end && !withTrailers) {
			msgs = append(msgs, bodyMsg(b.d.body, buf[:n], end && !withTrailers))
		}
		if withTrailers {
			msgs = append(msgs, trailersMsg(b.d, h, b.in))
		}
		for _, msg := range msgs {
			if !b.send(msg) {
				return
			}
		}
		if end {
			return
		}
	}
}

func (b *duplexBody) send(msg *extprocv3.ProcessingRequest) bool {
	in := b.in
	p := b.d.body
	if msg.GetRequestTrailers() != nil || msg.GetResponseTrailers() != nil {
		p = b.d.trailers
	}
	in.mu.Lock()
	in.decorate(p, msg)
	in.mu.Unlock()
	in.logMessage("send", p, msg)
	in.f.m.sent(p)
	return in.st.send(msg) == nil
}

func (b *duplexBody) Read(p []byte) (int, error) {
	if !b.started {
		b.started = true
		b.start()
	}
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

var errDuplexCut = errors.New("processor ended the stream before the end of a full-duplex body")

// next waits for the processor's next answer of this direction.
func (b *duplexBody) next() {
	in := b.in
	st := in.st
	st.async.setOwner(b.ch)
	var ans *extprocv3.ProcessingResponse
	idle := time.NewTimer(in.f.pool.opts.IdleTimeout)
	defer idle.Stop()
	select {
	case ans = <-b.ch:
	case <-idle.C:
		// No per-message timer in full-duplex mode, but a stream that goes quiet
		// for IdleTimeout fails as a timeout (504).
		st.cancel(errMessageTimeout)
		in.mu.Lock()
		b.err = in.fail(&failure{kindTimeout, errMessageTimeout})
		in.mu.Unlock()
		return
	case <-st.async.dead:
		// Answers the processor sent before it ended the stream come first.
		var ok bool
		if ans, ok = queued(b.ch); !ok {
			in.mu.Lock()
			f := classify(st.ctx, in.ctx, st.async.err)
			if f.kind == kindClosed {
				f = &failure{kindStream, errDuplexCut}
			}
			b.err = in.fail(f)
			in.mu.Unlock()
			return
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if lr, f, ok := in.immediateAnswer(b.d.body, ans); ok {
		if f != nil {
			lr = in.fail(f)
		}
		b.err = lr
		return
	}
	in.takeMetadata(ans)
	if tr := ans.GetRequestTrailers(); tr != nil || ans.GetResponseTrailers() != nil {
		if b.d.trailers == phaseRequestTrailers && tr == nil || b.d.trailers == phaseResponseTrailers && tr != nil {
			b.err = in.fail(spurious("trailers answer of the other direction"))
			return
		}
		if hm := ans.GetRequestTrailers().GetHeaderMutation(); hm != nil {
			if f := in.applyTrailers(b.trailers(), hm); f != nil {
				b.err = in.fail(f)
				return
			}
		} else if hm := ans.GetResponseTrailers().GetHeaderMutation(); hm != nil {
			if f := in.applyTrailers(b.trailers(), hm); f != nil {
				b.err = in.fail(f)
				return
			}
		}
		b.finish()
		return
	}
	var br *extprocv3.BodyResponse
	if b.d.body == phaseRequestBody {
		br = ans.GetRequestBody()
	} else {
		br = ans.GetResponseBody()
	}
	sr := br.GetResponse().GetBodyMutation().GetStreamedResponse()
	if sr == nil {
		// In full-duplex mode every body answer is a streamed_response.
		b.err = in.fail(spurious("answer %T in full-duplex %s", ans.GetResponse(), b.d.body))
		return
	}
	b.out = sr.GetBody()
	if sr.GetEndOfStream() {
		b.finish()
	}
}

func (b *duplexBody) finish() {
	b.err = io.EOF
	b.in.directionDone(b.d)
}

func (b *duplexBody) Close() error { return b.src.Close() }
