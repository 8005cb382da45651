package dataplane

import (
	"errors"
	"io"
	"sync"
)

// maxReplayBody is the most of a request body kept in memory so that a retry can send it
// again and a mirror can copy it, as Envoy's default retry buffer limit. A body that
// grows past it streams on to the try in progress, and is neither retried nor mirrored.
const maxReplayBody = 64 << 10

// errStaleTry is what the body of an abandoned try reads: a transport may still read the
// body of a try it gave up on, from a goroutine of its own, after a newer try began.
var errStaleTry = errors.New("request body: this try was abandoned for a newer one")

// errNotReplayable refuses a transport's own attempt to rewind a body past the limit.
var errNotReplayable = errors.New("request body: larger than the replay limit, cannot be sent again")

// replayBody is a request body that can be sent more than once, as Envoy's retry buffer:
// it streams to the current try as the client sends it, while every byte read is kept,
// so a new try starts with what was read and then goes on reading the client. Nothing is
// read ahead of a try: a client that waits for the response before it sends the rest of
// its body still gets one.
type replayBody struct {
	src io.ReadCloser
	// length is the body's announced length, -1 when unknown: a body read to its length
	// is whole, even before src reports io.EOF (an HTTP/2 body reports it on the read
	// after the last bytes, which a transport that knows the length never makes).
	length int64

	// readMu is held across a read of src, so that reads stay in order; mu guards the
	// rest and is never held across a read, so starting a try never waits on the client.
	readMu sync.Mutex
	mu     sync.Mutex
	buf    []byte
	// err is src's final error (io.EOF once read whole); every try reads it after buf.
	err error
	// overflow: more than maxReplayBody was read; buf is gone and no new try can start.
	overflow bool
	// gen numbers the tries; a reader of an older one is stale.
	gen int
	// done are called once, with the whole body or with ok false (see onDone).
	done []func(body []byte, ok bool)
}

// newReplayBody wraps src, a body of length bytes (-1 when unknown).
func newReplayBody(src io.ReadCloser, length int64) *replayBody {
	r := &replayBody{src: src, length: length}
	if length > 0 && length <= maxReplayBody {
		r.buf = make([]byte, 0, length)
	}
	return r
}

// next returns the body of a new try, from the first byte; readers of earlier tries
// fail from their next read. ok is false once the body outgrew the limit, or once
// reading it failed (the client went away, or a filter failed it): a new try would fail
// the same way.
func (r *replayBody) next() (body io.ReadCloser, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.overflow || r.err != nil && r.err != io.EOF {
		return nil, false
	}
	r.gen++
	return &tryBody{r: r, gen: r.gen}, true
}

// failure is why reading the client's body failed, if it did (not a clean end).
func (r *replayBody) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == io.EOF {
		return nil
	}
	return r.err
}

// onDone calls f once: with the whole body when a try has read it to its end within the
// limit, else with ok false when it outgrew the limit, failed, or at finish. body must
// not be changed.
func (r *replayBody) onDone(f func(body []byte, ok bool)) {
	r.mu.Lock()
	r.done = append(r.done, f)
	r.mu.Unlock()
}

// finish calls the onDone functions still waiting with ok false: the exchange is over
// and the body was never read to its end.
func (r *replayBody) finish() {
	r.mu.Lock()
	done := r.settle()
	r.mu.Unlock()
	call(done, nil, false)
}

// settle takes the onDone functions to call; r.mu is held.
func (r *replayBody) settle() []func([]byte, bool) {
	done := r.done
	r.done = nil
	return done
}

func call(done []func([]byte, bool), body []byte, ok bool) {
	for _, f := range done {
		f(body, ok)
	}
}

// tryBody is the body of one try.
type tryBody struct {
	r   *replayBody
	gen int
	off int
}

// unread reports whether t is the current try's body and nothing of it was read.
func (t *tryBody) unread() bool {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	return t.gen == t.r.gen && t.off == 0 && !t.r.overflow
}

func (t *tryBody) Read(p []byte) (int, error) {
	r := t.r
	r.readMu.Lock()
	defer r.readMu.Unlock()
	r.mu.Lock()
	switch {
	case t.gen != r.gen:
		r.mu.Unlock()
		return 0, errStaleTry
	case t.off < len(r.buf):
		n := copy(p, r.buf[t.off:])
		t.off += n
		r.mu.Unlock()
		return n, nil
	case r.err != nil:
		err := r.err
		r.mu.Unlock()
		return 0, err
	}
	r.mu.Unlock()

	n, err := r.src.Read(p)

	r.mu.Lock()
	stale := t.gen != r.gen
	switch {
	case n == 0:
	case r.overflow:
		// Past the limit: the bytes stream through to this, the last, try.
	case stale || len(r.buf)+n <= maxReplayBody:
		// A stale try's bytes are kept even past the limit (by one read at most): the
		// new try needs them, and they were read before it could overflow anything.
		r.buf = append(r.buf, p[:n]...)
		t.off += n
	default:
		r.overflow, r.buf, t.off = true, nil, 0
	}
	end := err
	if end == nil && r.length >= 0 && !r.overflow && int64(len(r.buf)) >= r.length {
		end = io.EOF
	}
	var done []func([]byte, bool)
	if r.overflow || end != nil {
		done = r.settle()
	}
	if end != nil {
		r.err = end
	}
	ok := end == io.EOF && !r.overflow
	body := r.buf
	r.mu.Unlock()
	if !ok {
		body = nil
	}
	call(done, body, ok)
	if stale {
		return 0, errStaleTry
	}
	return n, err
}

// Close leaves the client's body open: a later try may still read it, and the server
// closes it when the exchange ends.
func (t *tryBody) Close() error { return nil }
