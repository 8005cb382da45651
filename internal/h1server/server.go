// Package h1server is a lean HTTP/1.1 server for Sluice's plain-HTTP listeners, a drop-in
// for net/http's http.Server there: handlers get a real *http.Request and an
// http.ResponseWriter that supports Flush, Hijack and http.ResponseController.
//
// It exists because net/http's server is the largest user-space cost per proxied request
// and holds ~12 KiB of buffers and a grown goroutine stack per idle keep-alive connection.
// This server runs the handler on the connection's goroutine (no goroutine per request
// unless a request outlives watchDelay, see conn.watch), parses the head from one buffer
// into one string, batches the response head and a small body into one write, and gives
// its buffers back to a pool when a connection has been idle for BufferReleaseDelay.
//
// It is stricter than net/http where a gateway must be: Content-Length together with
// Transfer-Encoding, obsolete line folding, bare CR and malformed request lines are
// refused with 400 and the connection is closed.
//
// Rules for handlers (Sluice's data plane keeps them): the ResponseWriter and the
// response header map are reused by the next request of the connection, so neither may
// be used after ServeHTTP returns; the *http.Request, its header map and its body are
// per request (a body read after the handler returned fails with
// http.ErrBodyReadAfterClose). The server always behaves as if
// ResponseController.EnableFullDuplex had been called: the request body stays readable
// while the response is written.
package h1server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.x on the listeners given to Serve, and hands connections that open
// with the HTTP/2 preface to H2C.
type Server struct {
	// Handler serves every request; nil answers 404 to all.
	Handler http.Handler
	// ReadHeaderTimeout bounds the time from the first byte of a request (or the
	// connection's start) to the end of its head. Zero means no limit.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long. Zero means no limit.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request head as net/http does (the limit plus 4096 bytes
	// of slack); larger heads get 431. Default http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ConnContext, if set, derives each connection's base context.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// H2C, if set, serves the connections that start with the HTTP/2 client preface
	// (prior-knowledge h2c). Serve runs it on an internal listener that yields those
	// connections with the preface replayed; its Protocols should enable
	// UnencryptedHTTP2 only. Shutdown and Close shut it down too.
	H2C *http.Server
	// ErrorLog receives handler panics and server errors. Default: the log package's
	// standard logger.
	ErrorLog *log.Logger
	// OnRefuse, if set, is told of every request the server answers itself, before any
	// handler, because it is malformed or ambiguous (400, 431, 501, ...): the status
	// code and the reason sent. It runs on the connection's goroutine; it must not block.
	OnRefuse func(c net.Conn, code int, reason string)
	// BufferReleaseDelay is how long a keep-alive connection keeps its pooled buffers
	// while waiting for its next request; after it, the buffers go back to the pool and
	// the connection waits with a one-byte read. Default 250ms.
	BufferReleaseDelay time.Duration

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*conn]struct{}
	h2ln       *chanListener
	h2done     chan struct{}
	inShutdown atomic.Bool
}

// aLongTimeAgo is a deadline in the past: it makes a pending read return at once.
var aLongTimeAgo = time.Unix(1, 0)

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

func (s *Server) maxHeaderBytes() int {
	n := s.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	// As net/http: the limit covers the header fields; the request line and some slack
	// come on top.
	return n + 4096
}

func (s *Server) releaseDelay() time.Duration {
	if s.BufferReleaseDelay > 0 {
		return s.BufferReleaseDelay
	}
	return 250 * time.Millisecond
}

// Serve accepts connections on ln and serves each on its own goroutine. It always
// returns a non-nil error; after Shutdown or Close, http.ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	if !s.trackListener(&ln, true) {
		ln.Close()
		return http.ErrServerClosed
	}
	defer s.trackListener(&ln, false)
	baseCtx := context.Background()
	var delay time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// As net/http: back off on errors such as too many open files.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else {
					delay = min(2*delay, time.Second)
				}
				s.logf("h1server: accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accepting connections: %w", err)
		}
		delay = 0
		c := newConn(s, rwc)
		if !s.trackConn(c, true) {
			rwc.Close()
			return http.ErrServerClosed
		}
		go c.serve(baseCtx)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) trackListener(ln *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		if s.listeners == nil {
			s.listeners = make(map[*net.Listener]struct{})
		}
		s.listeners[ln] = struct{}{}
	} else {
		delete(s.listeners, ln)
	}
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		if s.conns == nil {
			s.conns = make(map[*conn]struct{})
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// h2cListener returns the listener that feeds H2C, starting H2C on first use.
func (s *Server) h2cListener() *chanListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.H2C == nil || s.inShutdown.Load() {
		return nil
	}
	if s.h2ln == nil {
		s.h2ln = newChanListener()
		s.h2done = make(chan struct{})
		go func(ln *chanListener, done chan struct{}) {
			defer close(done)
			if err := s.H2C.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logf("h1server: h2c server stopped: %v", err)
			}
		}(s.h2ln, s.h2done)
	}
	return s.h2ln
}

func (s *Server) closeListenersLocked() error {
	var errs []error
	for ln := range s.listeners {
		if err := (*ln).Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing listener %v: %w", (*ln).Addr(), err))
		}
		delete(s.listeners, ln)
	}
	return errors.Join(errs...)
}

// Shutdown stops accepting connections, closes idle ones and waits for the active ones
// to finish their request, until ctx is done (then it returns ctx's error and leaves the
// remaining connections to Close). Hijacked connections are not waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	lnErr := s.closeListenersLocked()
	h2, h2done := s.h2ln, s.h2done
	s.mu.Unlock()

	var h2err error
	if h2 != nil {
		// H2C's Shutdown closes the listener it serves; closing it after covers a Serve
		// that had not started yet.
		h2err = s.H2C.Shutdown(ctx)
		h2.Close()
		<-h2done
	}

	const maxPoll = 500 * time.Millisecond
	poll := time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		if s.closeIdleConns() {
			return errors.Join(lnErr, h2err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			poll = min(2*poll, maxPoll)
			timer.Reset(poll)
		}
	}
}

// closeIdleConns closes the connections waiting for a request and reports whether none
// is left.
func (s *Server) closeIdleConns() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

// Close closes the listeners and every connection at once (hijacked ones excepted), as
// net/http does; it does not wait for handlers to return.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	err := s.closeListenersLocked()
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.rwc.Close()
	}
	h2, h2done := s.h2ln, s.h2done
	s.mu.Unlock()
	if h2 != nil {
		if cerr := s.H2C.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing the h2c server: %w", cerr))
		}
		h2.Close()
		<-h2done
	}
	return err
}

// chanListener yields the connections handed to it: the h2c connections found by the
// HTTP/1 server.
type chanListener struct {
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	addr   net.Addr
	addrMu sync.Mutex
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// hand gives c to the listener's server; false if the listener is closed.
func (l *chanListener) hand(c net.Conn) bool {
	l.addrMu.Lock()
	if l.addr == nil {
		l.addr = c.LocalAddr()
	}
	l.addrMu.Unlock()
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr {
	l.addrMu.Lock()
	defer l.addrMu.Unlock()
	if l.addr == nil {
		return &net.TCPAddr{}
	}
	return l.addr
}

// replayConn is a connection whose first bytes were already read: Read returns them
// first.
type replayConn struct {
	net.Conn
	pre []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets a server half-close the connection, when the connection can.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
