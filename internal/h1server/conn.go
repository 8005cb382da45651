package h1server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Connection states, for Shutdown: only an idle connection may be closed under it.
const (
	// stateIdle: waiting for the first byte of a request.
	stateIdle int32 = iota
	stateActive
	stateHijacked
	stateClosed
)

const (
	readBufSize = 4 << 10
	// writeBufSize holds a response head and a small body, written with one system call.
	writeBufSize = 4 << 10
	// pendSize is how much body the server holds back before the head is written, so that
	// a small response gets a Content-Length instead of chunking (net/http: 2048).
	pendSize = 2 << 10
	// maxDrainBytes bounds the unread request body the server reads and discards after
	// the handler to keep the connection (net/http: 256 KiB).
	maxDrainBytes = 256 << 10
)

// watchDelay is how long a handler runs before the server starts watching the connection
// for the client going away: short requests never pay for the watching goroutine.
var watchDelay = 5 * time.Millisecond

// buffers are a connection's pooled buffers, held while it has a request to read or a
// response to write, and for BufferReleaseDelay after.
type buffers struct {
	r    [readBufSize]byte
	w    [writeBufSize]byte
	pend [pendSize]byte
}

var bufPool = sync.Pool{New: func() any { return new(buffers) }}

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// conn is one client connection. Its goroutine reads requests, runs the handler and
// writes the responses; the fields below the watcher's mutex are shared with the
// goroutine that watches for the client going away.
type conn struct {
	srv        *Server
	rwc        net.Conn
	remoteAddr string
	ctx        context.Context
	state      atomic.Int32

	bufs *buffers
	// rbuf[rpos:rend] are the bytes read and not consumed. rbuf is bufs.r, or a larger
	// buffer while a head does not fit.
	rbuf       []byte
	rpos, rend int
	// one receives the byte of an idle connection's small read, or of the watcher.
	one     [1]byte
	hasByte bool
	// rdeadline says a read deadline is set.
	rdeadline bool

	wbuf   []byte
	werr   error
	iovArr [3][]byte
	iov    net.Buffers

	res      response
	hijacked bool

	mu         sync.Mutex
	gen        uint64
	timerGen   uint64
	inHandler  bool
	bodyDone   bool
	wantWatch  bool
	watching   bool
	abortWatch bool
	clientGone bool
	watchDone  chan struct{}
	watchTimer *time.Timer
	cancelReq  context.CancelFunc
}

func newConn(s *Server, rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc}
	c.res.c = c
	return c
}

func (c *conn) serve(base context.Context) {
	keepOpen := false
	defer func() {
		if c.watchTimer != nil {
			c.watchTimer.Stop()
		}
		c.releaseBufs(true)
		if !keepOpen {
			c.state.Store(stateClosed)
			c.rwc.Close()
		}
		c.srv.trackConn(c, false)
	}()
	if ra := c.rwc.RemoteAddr(); ra != nil {
		c.remoteAddr = ra.String()
	}
	ctx := context.WithValue(base, http.LocalAddrContextKey, c.rwc.LocalAddr())
	if c.srv.ConnContext != nil {
		ctx = c.srv.ConnContext(ctx, c.rwc)
		if ctx == nil {
			panic("h1server: ConnContext returned nil")
		}
	}
	c.ctx = ctx

	for first := true; ; first = false {
		if !c.waitRequest(first) {
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it
		}
		if first && c.srv.H2C != nil {
			if handed, ok := c.maybeH2C(); handed || !ok {
				keepOpen = handed
				return
			}
		}
		if !c.serveOne() {
			return
		}
		if c.hijacked {
			keepOpen = true
			return
		}
		if c.srv.inShutdown.Load() {
			return
		}
		c.state.Store(stateIdle)
	}
}

// waitRequest waits for the first bytes of the next request, with the connection's idle
// (or, for its first request, header) timeout. A connection that holds its buffers waits
// with them for BufferReleaseDelay, then gives them back and waits with a one-byte read.
func (c *conn) waitRequest(first bool) bool {
	if c.rend > c.rpos || c.hasByte {
		return true // pipelined
	}
	timeout := c.srv.IdleTimeout
	if first {
		timeout = c.srv.ReadHeaderTimeout
	}
	now := time.Now()
	var deadline time.Time
	if timeout > 0 {
		deadline = now.Add(timeout)
	}
	if c.bufs != nil {
		d := c.srv.releaseDelay()
		if timeout > 0 && timeout <= d {
			c.setReadDeadline(deadline)
		} else {
			c.setReadDeadline(now.Add(d))
		}
		c.rpos, c.rend = 0, 0
		n, err := c.rwc.Read(c.rbuf)
		if n > 0 {
			c.rend = n
			return true
		}
		if !isTimeout(err) || (timeout > 0 && timeout <= d) {
			return false
		}
		if c.state.Load() != stateIdle {
			return false
		}
		c.releaseBufs(false)
	}
	c.setReadDeadline(deadline)
	// Errors end the connection alike: timeout, close by Shutdown, client gone.
	n, _ := c.rwc.Read(c.one[:])
	if n == 1 {
		c.hasByte = true
		return true
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *conn) setReadDeadline(t time.Time) {
	if t.IsZero() && !c.rdeadline {
		return
	}
	c.rdeadline = !t.IsZero()
	_ = c.rwc.SetReadDeadline(t)
}

// takeBufs makes sure the connection holds its buffers, with the idle read's byte first.
func (c *conn) takeBufs() {
	if c.bufs == nil {
		c.bufs = bufPool.Get().(*buffers)
		c.rbuf = c.bufs.r[:]
		c.wbuf = c.bufs.w[:0]
		c.rpos, c.rend = 0, 0
	}
	if c.hasByte {
		// Only ever set with nothing buffered.
		c.rbuf[0] = c.one[0]
		c.rpos, c.rend = 0, 1
		c.hasByte = false
	}
}

// releaseBufs gives the buffers back to the pool; unless final, only when nothing is
// buffered in them.
func (c *conn) releaseBufs(final bool) {
	if c.bufs == nil || (!final && (c.rend > c.rpos || len(c.wbuf) > 0)) {
		return
	}
	b := c.bufs
	c.bufs, c.rbuf, c.wbuf, c.rpos, c.rend = nil, nil, nil, 0, 0
	c.res.pend = nil
	bufPool.Put(b)
}

// maybeH2C hands the connection to the H2C server when it opens with the HTTP/2
// preface. ok is false when the connection failed while the server looked.
func (c *conn) maybeH2C() (handed, ok bool) {
	c.takeBufs()
	for {
		got := c.rbuf[c.rpos:c.rend]
		n := min(len(got), len(h2Preface))
		if !bytes.Equal(got[:n], []byte(h2Preface[:n])) {
			return false, true
		}
		if n == len(h2Preface) {
			break
		}
		if c.srv.ReadHeaderTimeout > 0 {
			c.setReadDeadline(time.Now().Add(c.srv.ReadHeaderTimeout))
		}
		if err := c.fill(); err != nil {
			return false, false
		}
	}
	ln := c.srv.h2cListener()
	if ln == nil {
		return false, false
	}
	pre := bytes.Clone(c.rbuf[c.rpos:c.rend])
	c.releaseBufs(true)
	c.setReadDeadline(time.Time{})
	// The HTTP/2 server owns the connection from here: Shutdown must not wait for it.
	c.state.Store(stateHijacked)
	if !ln.hand(&replayConn{Conn: c.rwc, pre: pre}) {
		return false, false
	}
	return true, true
}

// fill reads more bytes into rbuf, making room first.
func (c *conn) fill() error {
	if c.rpos == c.rend {
		c.rpos, c.rend = 0, 0
	}
	if c.rend == len(c.rbuf) {
		if c.rpos == 0 {
			return errBufferFull
		}
		c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
		c.rpos = 0
	}
	n, err := c.rwc.Read(c.rbuf[c.rend:])
	c.rend += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

var errBufferFull = errors.New("h1server: buffer full")

// readBody reads request body bytes into p: buffered ones first, then from the
// connection, directly into p when p is large.
func (c *conn) readBody(p []byte) (int, error) {
	if c.rend > c.rpos {
		n := copy(p, c.rbuf[c.rpos:c.rend])
		c.rpos += n
		return n, nil
	}
	if len(p) >= len(c.rbuf) {
		n, err := c.rwc.Read(p)
		if n > 0 {
			return n, nil
		}
		return 0, bodyReadErr(err)
	}
	c.rpos, c.rend = 0, 0
	if err := c.fill(); err != nil {
		return 0, bodyReadErr(err)
	}
	n := copy(p, c.rbuf[c.rpos:c.rend])
	c.rpos += n
	return n, nil
}

func bodyReadErr(err error) error {
	if err == io.EOF || err == nil {
		return io.ErrUnexpectedEOF
	}
	return err
}

// serveOne reads one request, runs the handler and finishes the response. It reports
// whether the connection may serve another request.
func (c *conn) serveOne() bool {
	c.takeBufs()
	var tmp http.Request
	b, rerr := c.readRequest(&tmp)
	if rerr != nil {
		c.replyError(rerr)
		return false
	}
	ctx, cancel := context.WithCancel(c.ctx)
	req := tmp.WithContext(ctx)
	if b != nil {
		b.req = req
	}
	w := &c.res
	w.reset(req, b)

	c.mu.Lock()
	c.gen++
	c.inHandler, c.bodyDone, c.wantWatch, c.clientGone = true, b == nil, false, false
	c.cancelReq = cancel
	c.timerGen = c.gen
	c.mu.Unlock()
	if c.watchTimer == nil {
		c.watchTimer = time.AfterFunc(watchDelay, c.watchFired)
	} else {
		c.watchTimer.Reset(watchDelay)
	}

	panicked := c.runHandler(w, req)

	c.watchTimer.Stop()
	c.stopWatch(false)
	cancel()
	if c.hijacked {
		return true
	}
	if panicked {
		// As net/http: what was written goes out, then the connection closes, so the
		// client sees the response cut short.
		if b != nil {
			b.abort()
		}
		c.flush()
		return false
	}
	w.finish()
	if w.closeAfter && b != nil && !b.sawEOF && c.werr == nil {
		// Body bytes may still come: closing now would reset the connection and could
		// destroy the response in flight.
		c.lingerClose()
	}
	return !w.closeAfter && c.werr == nil && !c.clientGone
}

func (c *conn) runHandler(w *response, req *http.Request) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			if p != http.ErrAbortHandler {
				const size = 64 << 10
				buf := make([]byte, size)
				buf = buf[:runtime.Stack(buf, false)]
				c.srv.logf("h1server: panic serving %v: %v\n%s", c.remoteAddr, p, buf)
			}
		}
	}()
	h := c.srv.Handler
	if h == nil {
		h = http.NotFoundHandler()
	}
	h.ServeHTTP(w, req)
	return false
}

// watchFired runs when a handler has run for watchDelay: it watches the connection for
// the client going away, once the request body has been read (before, the body's reads
// see it).
func (c *conn) watchFired() {
	c.mu.Lock()
	if !c.inHandler || c.timerGen != c.gen || c.watching || c.hijacked {
		c.mu.Unlock()
		return
	}
	if !c.bodyDone {
		c.wantWatch = true
		c.mu.Unlock()
		return
	}
	c.startWatchLocked()
}

// startWatchLocked starts watching; called with c.mu held, it unlocks it and reads.
func (c *conn) startWatchLocked() {
	if c.rend > c.rpos || c.hasByte {
		// The next request is already here: nothing to learn from reading.
		c.mu.Unlock()
		return
	}
	c.watching = true
	done := make(chan struct{})
	c.watchDone = done
	c.mu.Unlock()

	n, err := c.rwc.Read(c.one[:])

	c.mu.Lock()
	c.watching = false
	if n == 1 {
		c.hasByte = true
	} else if !c.abortWatch && err != nil && !isTimeout(err) {
		c.clientGone = true
		if c.cancelReq != nil {
			c.cancelReq()
		}
	}
	c.mu.Unlock()
	close(done)
}

// bodyEOF notes that the request body has been read to its end; a watch wanted before
// starts now.
func (c *conn) bodyEOF() {
	c.mu.Lock()
	c.bodyDone = true
	if c.wantWatch && c.inHandler && !c.watching && !c.hijacked {
		c.wantWatch = false
		gen := c.gen
		go func() {
			c.mu.Lock()
			// The handler may have returned, and the next request begun, meanwhile.
			if c.gen != gen || !c.inHandler || c.watching || c.hijacked {
				c.mu.Unlock()
				return
			}
			c.startWatchLocked()
		}()
	}
	c.mu.Unlock()
}

// stopWatch ends the handler's watch, if running, and waits for its read to return.
func (c *conn) stopWatch(hijack bool) {
	c.mu.Lock()
	c.inHandler = false
	c.wantWatch = false
	if hijack {
		c.hijacked = true
	}
	if !c.watching {
		c.mu.Unlock()
		return
	}
	c.abortWatch = true
	done := c.watchDone
	c.mu.Unlock()
	_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	<-done
	_ = c.rwc.SetReadDeadline(time.Time{})
	c.rdeadline = false
	c.mu.Lock()
	c.abortWatch = false
	c.mu.Unlock()
}

// write queues p for the client, writing the queue and p together (writev) when p does
// not fit.
func (c *conn) write(p []byte) error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.wbuf)+len(p) <= cap(c.wbuf) {
		c.wbuf = append(c.wbuf, p...)
		return nil
	}
	if len(c.wbuf) == 0 {
		_, err := c.rwc.Write(p)
		return c.writeErr(err)
	}
	return c.writev(p, nil)
}

func (c *conn) writev(p, q []byte) error {
	c.iov = append(c.iovArr[:0], c.wbuf, p)
	if len(q) > 0 {
		c.iov = append(c.iov, q)
	}
	_, err := c.iov.WriteTo(c.rwc)
	c.iov = nil
	c.iovArr = [3][]byte{}
	c.wbuf = c.wbuf[:0]
	return c.writeErr(err)
}

func (c *conn) flush() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.rwc.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return c.writeErr(err)
}

// writeErr makes a write error sticky and cancels the request: the client is gone.
func (c *conn) writeErr(err error) error {
	if err == nil {
		return nil
	}
	c.werr = err
	c.mu.Lock()
	if c.cancelReq != nil {
		c.cancelReq()
	}
	c.mu.Unlock()
	return err
}

// replyError answers a request the server refuses, as net/http words it, and closes the
// connection gracefully: the write side first, then, after the client had time to read
// the answer, the rest (closing with unread bytes would reset the connection and could
// destroy the answer in flight).
func (c *conn) replyError(e *requestError) {
	if e.code == 0 {
		return
	}
	if c.srv.OnRefuse != nil {
		c.srv.OnRefuse(c.rwc, e.code, e.msg)
	}
	text := http.StatusText(e.code)
	msg := strconv.Itoa(e.code) + " " + text
	if e.msg != "" {
		msg += ": " + e.msg
	}
	c.wbuf = c.wbuf[:0]
	c.wbuf = appendStatusLine(c.wbuf, true, e.code)
	c.wbuf = append(c.wbuf, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	c.wbuf = strconv.AppendInt(c.wbuf, int64(len(msg)), 10)
	c.wbuf = append(c.wbuf, "\r\n\r\n"...)
	c.wbuf = append(c.wbuf, msg...)
	_ = c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	if c.flush() != nil {
		return
	}
	c.lingerClose()
}

// lingerClose half-closes the connection and reads what the client still sends, for a
// short while, before the caller closes it.
func (c *conn) lingerClose() {
	cw, ok := c.rwc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	c.rdeadline = true
	buf := c.rbuf
	if len(buf) == 0 {
		buf = c.one[:]
	}
	for total := 0; total < 256<<10; {
		n, err := c.rwc.Read(buf)
		total += n
		if err != nil {
			return
		}
	}
}
