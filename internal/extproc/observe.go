package extproc

import (
	"bytes"
	"io"
	"net/http"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
	"github.com/sluice-gateway/sluice/internal/filter"
)

// Observability mode: messages are sent without waiting, answers are drained and
// ignored, and nothing the processor does can change or fail the request. The stream
// hangs off the pool's context, not the request's, because it outlives the request by
// up to DeferredCloseTimeout.

// observeQueue bounds the messages waiting for a processor that reads slowly: past it
// the observation of the request ends, rather than hold the request up (messages are
// sent without waiting) or let memory grow.
const observeQueue = 16

// observeSend queues msg for the stream's sender, opening the stream first if needed.
// Failures only end the observation.
func (in *instance) observeSend(p phase, msg *extprocv3.ProcessingRequest) {
	if in.bypass || in.done.Load() {
		return
	}
	if in.st == nil {
		st, err := in.f.open(in.f.pool.ctx)
		if err != nil {
			in.f.m.failed(kindUnavailable)
			in.bypass = true
			return
		}
		in.st = st
		in.stp.Store(st)
		in.startReceiver(st, true)
		in.obsq = make(chan *extprocv3.ProcessingRequest, observeQueue)
		in.startObserveSender(st, in.obsq)
	}
	in.decorate(p, msg)
	in.logMessage("send", p, msg)
	select {
	case in.obsq <- msg:
		in.f.m.sent(p)
	default:
		// The processor does not keep up: stop observing; the reset ends a send
		// blocked on its flow control.
		in.f.m.failed(kindTimeout)
		in.bypass = true
		in.st.cancel(errStreamDone)
	}
}

// startObserveSender sends what observeSend queues, then half-closes the stream once
// observeDone closes the queue.
func (in *instance) startObserveSender(st *stream, q chan *extprocv3.ProcessingRequest) {
	pool := in.f.pool
	pool.bg.Add(1)
	go func() {
		defer pool.bg.Done()
		for msg := range q {
			if err := st.send(msg); err != nil {
				in.f.m.failed(classify(st.ctx, nil, err).kind)
				in.mu.Lock()
				in.bypass = true
				in.mu.Unlock()
				for range q {
				}
				return
			}
		}
		st.closeSend()
	}()
}

func (in *instance) observeRequest(req *http.Request) *filter.LocalReply {
	in.mu.Lock()
	defer in.mu.Unlock()
	noBody := req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0
	if in.mode.RequestHeader {
		in.observeSend(phaseRequestHeaders, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{
				Headers:     mutate.RequestHeaders(req, in.ex.Scheme, in.set().Forward, in.set().HeaderValueField),
				EndOfStream: noBody,
			}}})
	}
	if !noBody && (in.mode.RequestBody == bodyStreamed || in.mode.RequestTrailer) {
		req.Body = &observeBody{in: in, d: requestDir, src: req.Body, trailers: func() http.Header { return req.Trailer },
			bodies: in.mode.RequestBody == bodyStreamed, sendTrailers: in.mode.RequestTrailer}
	}
	return nil
}

func (in *instance) observeResponse(resp *http.Response) *filter.LocalReply {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.resp = resp
	noBody := resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0
	if in.mode.ResponseHeader {
		in.observeSend(phaseResponseHeaders, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{
				Headers:     mutate.ResponseHeaders(resp, in.set().Forward, in.set().HeaderValueField),
				EndOfStream: noBody,
			}}})
	}
	if !noBody && (in.mode.ResponseBody == bodyStreamed || in.mode.ResponseTrailer) {
		resp.Body = &observeBody{in: in, d: responseDir, src: resp.Body, trailers: func() http.Header { return resp.Trailer },
			bodies: in.mode.ResponseBody == bodyStreamed, sendTrailers: in.mode.ResponseTrailer}
	}
	return nil
}

// observeDone half-closes the stream and leaves it DeferredCloseTimeout to finish; the
// receiver ends it earlier when the processor closes its side.
func (in *instance) observeDone() {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := in.st
	if st == nil {
		return
	}
	// The sender half-closes after the last message queued; nothing here waits on the
	// network.
	close(in.obsq)
	deferClose(st, in.f.pool.opts.DeferredCloseTimeout)
}

func deferClose(st *stream, d time.Duration) {
	st.deadline.Store(time.AfterFunc(d, func() { st.cancel(errStreamDone) }))
}

// observeBody copies each chunk to the processor as it passes.
type observeBody struct {
	in                   *instance
	d                    dir
	src                  io.ReadCloser
	trailers             func() http.Header
	bodies, sendTrailers bool
	eof                  bool
}

func (b *observeBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	if b.eof || (n == 0 && err == nil) {
		return n, err
	}
	end := err == io.EOF
	in := b.in
	in.mu.Lock()
	defer in.mu.Unlock()
	trailers := b.trailers()
	withTrailers := b.sendTrailers && hasValues(trailers)
	if b.bodies && (n > 0 || end) {
		// The message is sent later, by the stream's sender: p goes back to the caller.
		in.observeSend(b.d.body, bodyMsg(b.d.body, bytes.Clone(p[:n]), end && !withTrailers))
	}
	if end {
		b.eof = true
		if withTrailers {
			in.observeSend(b.d.trailers, trailersMsg(b.d, trailers, in))
		}
	}
	return n, err
}

func (b *observeBody) Close() error { return b.src.Close() }
