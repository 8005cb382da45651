package dataplane

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/internal/filter"
)

// maxDrain is the largest body of a retried response read to its end, so that its
// connection can serve the next try; a larger one closes its connection instead.
const maxDrain = 4 << 10

// serveRetrying sends out to the route's backends as serveRoute does, trying again as the
// route's retry policy says (see ir.Retry). rb is out's body made replayable, nil when
// out has none or one known to be too large to keep: then it is sent once, untried
// again. ex.ctx, when it has a deadline, is the request timeout's, which bounds every
// try and every wait between them.
func (g *Gateway) serveRetrying(ex *exchange, rt *route, out *http.Request, rb *replayBody) error {
	p := rt.ir.Retry
	retries := p.Attempts
	var body io.ReadCloser
	if rb != nil {
		body, _ = rb.next()
	} else if out.Body != nil && out.Body != http.NoBody {
		retries = 0
	}
	base := ex.ctx
	var hold budgetHold
	defer hold.done()
	for try := 0; ; try++ {
		w, ok := rt.pickBackend()
		if !ok || w.bal == nil {
			return g.localReply(ex, errBackendNotResolved())
		}
		hold.try(&w.bal.budget)
		ex.Backend = w.bal.backend.Name
		ex.metrics = w.metrics
		if len(w.bal.addrs) == 0 {
			return g.localReply(ex, errNoHealthyUpstream())
		}
		ctx, stop := tryContext(base, rt.ir.BackendTimeout)
		req := tryRequest(ctx, out, body, rb, &w)
		resp, err := g.sendPicked(ex, w.bal, req)
		again := try < retries && base.Err() == nil &&
			(err == nil && slices.Contains(p.Codes, resp.StatusCode) || err != nil && retryable(err))
		if again && !hold.retry(&w.bal.budget) {
			g.metrics.retryOverflow(ex)
			again = false
		}
		if again && rb != nil {
			// Taken before the answer is dropped: a body that outgrew the limit during
			// this try makes this try's answer the final one.
			if body, again = rb.next(); !again {
				hold.unretry()
			}
		}
		switch {
		case !again && err == nil:
			// The response's filters and body run under this try's timeout, as a
			// single try's do under the route's.
			ex.ctx = ctx
			defer stop()
			return g.deliver(ex, rt, w.respHeaders, resp)
		case !again && rb != nil && rb.failure() != nil && ex.in.Context().Err() == nil:
			stop()
			return g.bodyFailed(ex, rb.failure())
		case !again:
			ex.ctx = ctx // a try's timeout is a route timeout: 504
			defer stop()
			return g.upstreamFailed(ex, err)
		}
		if resp != nil {
			discard(resp)
		}
		stop()
		g.metrics.retried(ex)
		ex.retries++
		if !sleep(base, retryDelay(p.Backoff, try+1)) {
			// The request timed out, or the client went away, while waiting.
			return g.upstreamFailed(ex, context.Cause(base))
		}
	}
}

// bodyFailed answers a request that failed because its body could not be read, not
// because of the upstream: with a filter's local reply (a processor failed the body), or
// 400 for a broken body (a malformed chunk, say).
func (g *Gateway) bodyFailed(ex *exchange, cause error) error {
	var lr *filter.LocalReply
	switch {
	case errors.As(cause, &lr):
		return g.localReply(ex, lr)
	case errors.Is(cause, io.ErrUnexpectedEOF):
		// The client went away in the middle of its body: nobody reads an answer.
		ex.status, ex.details = 499, "downstream_disconnected"
		return cause
	}
	return g.localReply(ex, filter.Reply(http.StatusBadRequest, "downstream_body_error", "the request body could not be read\n"))
}

// clientBody records why reading a request body failed, for bodyFailed. The transport
// may read it from a goroutine of its own, still running when the round trip returned.
type clientBody struct {
	io.ReadCloser
	failed atomic.Pointer[error]
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.failed.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (b *clientBody) failure() error {
	if e := b.failed.Load(); e != nil {
		return *e
	}
	return nil
}

func isLocalReply(err error) bool {
	var lr *filter.LocalReply
	return errors.As(err, &lr)
}

// tryContext bounds one try by the route's backend timeout, if any; stop releases it.
func tryContext(base context.Context, d time.Duration) (ctx context.Context, stop func()) {
	if d <= 0 {
		return base, func() {}
	}
	ctx, cancel := context.WithCancelCause(base)
	t := time.AfterFunc(d, func() { cancel(errRequestTimeout) })
	return ctx, func() {
		t.Stop()
		cancel(nil)
	}
}

// tryRequest is out for one try to backend w: its own URL, header and body, since the
// transport of a failed try may still read those of its request after it returned.
func tryRequest(ctx context.Context, out *http.Request, body io.ReadCloser, rb *replayBody, w *weighted) *http.Request {
	req := out.WithContext(ctx)
	u := *out.URL
	req.URL = &u
	if w.reqHeaders != nil {
		// out.Header stays as the route's filters left it, for the next try's backend.
		req.Header = out.Header.Clone()
		w.reqHeaders.apply(req.Header)
	}
	if rb != nil {
		req.Body = body
		// A transport that rewinds the body on its own starts a try of its own.
		req.GetBody = func() (io.ReadCloser, error) {
			if b, ok := rb.next(); ok {
				return b, nil
			}
			return nil, errNotReplayable
		}
	}
	return req
}

// retryable tells whether a failed try may be sent again: any failure of the connection
// or the try's timeout, not a filter's local reply (the request's body failed).
func retryable(err error) bool {
	return !isLocalReply(err)
}

// discard drops a response to be retried.
func discard(resp *http.Response) {
	if resp.ContentLength >= 0 && resp.ContentLength <= maxDrain {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	}
	resp.Body.Close()
}

// retryDelay is the wait before retry n (from 1): Envoy's exponential backoff, base
// doubled each time up to 10 times base, plus a jitter of up to half of it. It is never
// shorter than base, the minimum the Gateway API requires.
func retryDelay(base time.Duration, n int) time.Duration {
	d := 10 * base
	if n < 5 { // 2^4 > 10
		d = min(d, base<<(n-1))
	}
	return d + rand.N(d/2+1)
}

// sleep waits for d, or less if ctx ends first; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return ctx.Err() == nil
}

// The retry budget, Envoy's defaults for one: the retries in flight to a backend may be
// at most retryBudgetPercent of the requests in flight to it on routes that retry, and
// never fewer than minRetryConcurrency. It keeps retries from multiplying the load on a
// backend that fails under load: beyond it, the failed try's answer is the client's.
const (
	retryBudgetPercent  = 20
	minRetryConcurrency = 3
)

// retryBudget counts, for one backend, the requests in flight on routes that retry and
// the retries among them.
type retryBudget struct {
	active, retrying atomic.Int64
}

// acquire takes a retry from the budget; false when it is spent.
func (b *retryBudget) acquire() bool {
	limit := max(minRetryConcurrency, b.active.Load()*retryBudgetPercent/100)
	if b.retrying.Add(1) > limit {
		b.retrying.Add(-1)
		return false
	}
	return true
}

func (b *retryBudget) release() { b.retrying.Add(-1) }

// budgetHold is what one request holds of its backends' budgets: its place among the
// active requests of the backend of its current try, and the retry it was granted last.
type budgetHold struct {
	active, granted *retryBudget
}

// try moves the request's place to the budget of the backend of its next try.
func (h *budgetHold) try(b *retryBudget) {
	if h.active != b {
		if h.active != nil {
			h.active.active.Add(-1)
		}
		b.active.Add(1)
		h.active = b
	}
}

// retry takes a retry from b for the next try, giving back the one held before: that
// try has ended.
func (h *budgetHold) retry(b *retryBudget) bool {
	if h.granted != nil {
		h.granted.release()
		h.granted = nil
	}
	if !b.acquire() {
		return false
	}
	h.granted = b
	return true
}

// unretry gives back the retry just granted: it will not be made.
func (h *budgetHold) unretry() {
	if h.granted != nil {
		h.granted.release()
		h.granted = nil
	}
}

func (h *budgetHold) done() {
	if h.active != nil {
		h.active.active.Add(-1)
	}
	if h.granted != nil {
		h.granted.release()
	}
}
