package extproc

import (
	"io"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
	"github.com/sluice-gateway/sluice/internal/filter"
)

// streamChunk bounds one body message. Memory per streamed body is one chunk: a chunk is
// read only after the previous one was answered and passed on (back-pressure).
const streamChunk = 64 << 10

// streamBody is a STREAMED body: each chunk read from src goes to the processor, and what
// the processor answers is what the reader returns.
type streamBody struct {
	in       *instance
	d        dir
	src      io.ReadCloser
	trailers func() http.Header
	// remaining is the declared length still to come, -1 if unknown; it lets the last
	// chunk carry end_of_stream without waiting for io.EOF.
	remaining      int64
	expectTrailers bool

	buf []byte
	out []byte
	err error
}

func (in *instance) newStreamBody(d dir, src io.ReadCloser, length int64, trailers func() http.Header, expectTrailers bool) *streamBody {
	return &streamBody{in: in, d: d, src: src, remaining: length, trailers: trailers, expectTrailers: expectTrailers}
}

func (b *streamBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		b.step()
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *streamBody) Close() error { return b.src.Close() }

// step reads one chunk and runs it through the processor.
func (b *streamBody) step() {
	if b.buf == nil {
		size := int64(streamChunk)
		if b.remaining >= 0 && b.remaining < size {
			size = b.remaining
		}
		b.buf = make([]byte, max(size, 512))
	}
	var n int
	var err error
	if b.remaining != 0 {
		n, err = b.src.Read(b.buf)
	} else {
		err = io.EOF
	}
	in := b.in
	if err != nil && err != io.EOF {
		b.err = err
		in.abortStream()
		return
	}
	if b.remaining > 0 {
		b.remaining -= int64(n)
	}
	end := err == io.EOF || b.remaining == 0
	chunk := b.buf[:n]

	in.mu.Lock()
	defer in.mu.Unlock()
	if in.bypass || in.done.Load() {
		b.pass(chunk, end)
		return
	}
	if n == 0 && !end {
		return
	}
	ans, f := in.roundTrip(b.d.body, bodyMsg(b.d.body, chunk, end && !b.expectTrailers), false)
	if f != nil {
		b.failed(f, chunk, end)
		return
	}
	out, lr, f := in.bodyAnswer(b.d, ans, chunk, false)
	if f != nil || lr != nil {
		b.failedReply(lr, f, chunk, end)
		return
	}
	b.out = out
	if !end {
		return
	}
	if b.expectTrailers {
		if lr, f := in.sendTrailers(b.d, b.trailers()); f != nil || lr != nil {
			b.failedReply(lr, f, nil, true)
			return
		}
	}
	b.err = io.EOF
	in.directionDone(b.d)
}

func (b *streamBody) pass(chunk []byte, end bool) {
	b.out = chunk
	if end {
		b.err = io.EOF
	}
}

// failed continues (fail-open, clean close) with the original chunk, or fails the body
// with the local reply: on the request path the data plane can still send it; on the
// response path it resets the client's stream.
func (b *streamBody) failed(f *failure, chunk []byte, end bool) {
	b.failedReply(nil, f, chunk, end)
}

func (b *streamBody) failedReply(lr *filter.LocalReply, f *failure, chunk []byte, end bool) {
	if f != nil {
		lr = b.in.fail(f)
	}
	if lr == nil {
		b.pass(chunk, end)
		return
	}
	b.err = lr
}

// passBody passes a body through unprocessed (body mode NONE) to send its trailers.
type passBody struct {
	in       *instance
	d        dir
	src      io.ReadCloser
	trailers func() http.Header
	err      error
}

func (b *passBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.src.Read(p)
	if err != io.EOF {
		return n, err
	}
	in := b.in
	in.mu.Lock()
	defer in.mu.Unlock()
	b.err = io.EOF
	if h := b.trailers(); !in.bypass && !in.done.Load() && hasValues(h) {
		lr, f := in.sendTrailers(b.d, h)
		if f != nil {
			lr = in.fail(f)
		}
		if lr != nil {
			b.err = lr
			return n, nil
		}
	}
	in.directionDone(b.d)
	return n, io.EOF
}

func (b *passBody) Close() error { return b.src.Close() }

func hasValues(h http.Header) bool {
	for _, v := range h {
		if len(v) > 0 {
			return true
		}
	}
	return false
}

// directionDone records that d will send nothing more.
func (in *instance) directionDone(d dir) {
	if d.body == phaseRequestBody {
		in.reqDone = true
	} else {
		in.respDone = true
	}
	in.maybeFinish()
}

// abortStream resets the stream after the client or upstream body failed: the exchange
// cannot complete.
func (in *instance) abortStream() {
	if st := in.stp.Load(); st != nil {
		st.cancel(errStreamDone)
	}
}

func trailersMap(h http.Header, in *instance) *corev3.HeaderMap {
	return mutate.Trailers(h, in.set().Forward, in.set().HeaderValueField)
}

func (in *instance) applyTrailers(h http.Header, hm *extprocv3.HeaderMutation) *failure {
	out, err := mutate.ApplyTrailers(h, hm, in.set().Rules)
	for range out.Rejected {
		in.f.m.failed(kindMutation)
	}
	if err != nil {
		return mutationFailure(err)
	}
	return nil
}

func setHeader(k, v string, appendValue bool) *corev3.HeaderValueOption {
	action := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	if appendValue {
		action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	}
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}, AppendAction: action}
}
