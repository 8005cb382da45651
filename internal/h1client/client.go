// Package h1client is a lean HTTP/1.1 client for the gateway's upstream connections.
//
// net/http's Transport costs more than half of a Go proxy's time per request (see
// docs/design.md): two goroutines per connection, channels between them and the caller,
// and allocations to match. A proxy needs less: the request goroutine writes the request
// and reads the response itself on a pooled connection, and only a request that has a body
// gets a second goroutine to stream it, so that an upstream that answers before reading the
// whole body is served correctly. Parsing of responses, including chunked bodies and
// trailers, is net/http's own (http.ReadResponse), but for the common simple head (see
// readResponse).
package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Client sends HTTP/1.1 requests over pooled keep-alive connections. It is safe for
// concurrent use; the zero value is not: use New.
type Client struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*conn // by host:port, most recently used last
}

// Options tune a Client.
type Options struct {
	// Dial connects to an address. Default: a net.Dialer with a 5s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost is how many idle connections are kept per address. Default 1024.
	MaxIdlePerHost int
	// IdleTimeout closes connections idle this long. Default 90s.
	IdleTimeout time.Duration
}

// New returns a client.
func New(o Options) *Client {
	if o.Dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 1024
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	return &Client{dial: o.Dial, maxIdle: o.MaxIdlePerHost, idleTimeout: o.IdleTimeout, idle: make(map[string][]*conn)}
}

type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	idleAt time.Time
	reused bool
	// abort unblocks the connection's reads and writes when a request is cancelled; made
	// once per connection rather than per request.
	abort func()
}

// errStale marks a pooled connection that the server closed while it sat idle: the
// request never reached it and may be sent again on a new connection.
var errStale = errors.New("pooled connection closed by the upstream")

// RoundTrip sends req (URL.Host is the address dialled; req.Host the Host header) and
// returns the response, whose Body the caller must close. A 101 response's Body is the
// connection itself, an io.ReadWriteCloser. Informational responses are reported to the
// Got1xxResponse hook of the context's httptrace.ClientTrace, if any.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	var got1xx func(int, textproto.MIMEHeader) error
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil {
		got1xx = trace.Got1xxResponse
	}
	return c.Do(req, got1xx)
}

// Do is RoundTrip with the informational-response hook passed directly: got1xx, when not
// nil, is called with each 1xx response other than 101 (the context's httptrace hook is
// not consulted). It spares the caller a ClientTrace and a context per request.
func (c *Client) Do(req *http.Request, got1xx func(code int, header textproto.MIMEHeader) error) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		cn, err := c.get(ctx, req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(ctx, cn, req, got1xx)
		if err == nil {
			return resp, nil
		}
		// A request without a body is replayed once when a reused connection turned out
		// to be dead, as net/http does: the upstream cannot have seen it.
		if errors.Is(err, errStale) && attempt == 0 && (req.Body == nil || req.Body == http.NoBody) {
			continue
		}
		return nil, err
	}
}

func (c *Client) get(ctx context.Context, addr string) (*conn, error) {
	now := time.Now()
	c.mu.Lock()
	for l := c.idle[addr]; len(l) > 0; l = c.idle[addr] {
		cn := l[len(l)-1]
		l[len(l)-1] = nil
		c.idle[addr] = l[:len(l)-1]
		if now.Sub(cn.idleAt) > c.idleTimeout || !alive(cn) {
			c.mu.Unlock()
			cn.nc.Close()
			c.mu.Lock()
			continue
		}
		c.mu.Unlock()
		cn.reused = true
		return cn, nil
	}
	c.mu.Unlock()
	nc, err := c.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cn := &conn{
		nc:   nc,
		br:   bufio.NewReaderSize(nc, 16<<10),
		bw:   bufio.NewWriterSize(nc, 16<<10),
		addr: addr,
	}
	cn.abort = func() { nc.SetDeadline(time.Unix(1, 0)) }
	return cn, nil
}

func (c *Client) put(cn *conn) {
	cn.idleAt = time.Now()
	c.mu.Lock()
	l := c.idle[cn.addr]
	if len(l) >= c.maxIdle {
		c.mu.Unlock()
		cn.nc.Close()
		return
	}
	c.idle[cn.addr] = append(l, cn)
	c.mu.Unlock()
}

// CloseIdleConnections closes every pooled connection.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	idle := c.idle
	c.idle = make(map[string][]*conn)
	c.mu.Unlock()
	for _, l := range idle {
		for _, cn := range l {
			cn.nc.Close()
		}
	}
}

func (c *Client) roundTrip(ctx context.Context, cn *conn, req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, error) {
	// Cancelling the request must unblock reads and writes on the connection at once.
	stop := context.AfterFunc(ctx, cn.abort)
	fail := func(err error) (*http.Response, error) {
		stop()
		cn.nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	chunked, err := writeHead(cn.bw, req, body != nil)
	if err != nil {
		return fail(err)
	}
	// The head goes out at once, body or not: an upstream may answer before any body
	// arrives, and a client may wait for that answer before sending its body (long polls,
	// duplex streams).
	if err := cn.bw.Flush(); err != nil {
		return fail(c.staleOr(cn, err))
	}
	// The response body's reader also holds the upload's state: one allocation for both.
	rb := &bodyReader{c: c, cn: cn, stop: stop}
	startBody := func() {
		// The body streams beside the response: an upstream may answer (and close)
		// before it has read everything.
		done := make(chan error, 1)
		rb.bodyDone = done
		limit := int64(-1)
		if !chunked && req.ContentLength > 0 {
			limit = req.ContentLength
		}
		go func() {
			err := writeBody(cn.bw, body, chunked, limit, req.Trailer, &rb.bodyRead)
			if err != nil {
				// A body that cannot be read to its end (the client went away, a filter
				// failed it) must not leave the upstream waiting for the rest: closing the
				// connection ends the exchange, and the response read fails with it.
				cn.nc.Close()
			}
			done <- err
		}()
	}
	expect := body != nil && httpguts.HeaderValuesContainsToken(req.Header["Expect"], "100-continue")
	if body != nil && !expect {
		startBody()
	}
	if expect {
		// Hold the body until the upstream says 100 Continue, answers, or stays silent
		// for a second, as net/http does.
		cn.nc.SetReadDeadline(time.Now().Add(time.Second))
		_, err := cn.br.Peek(1)
		cn.nc.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			startBody()
		default:
			return fail(c.staleOr(cn, err))
		}
	}
	var resp *http.Response
	for {
		resp, err = readResponse(cn.br, req)
		if err != nil {
			// A body still uploading ends on its own once the connection is closed or the
			// client's body ends; waiting for it could wait on the client forever.
			return fail(c.staleOr(cn, err))
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if resp.StatusCode == http.StatusContinue && expect && rb.bodyDone == nil {
			startBody()
		}
		if got1xx != nil {
			if err := got1xx(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		resp.Body = &upgraded{cn: cn}
		return resp, nil
	}
	// A final answer to an Expect: 100-continue request whose body was never sent leaves
	// the connection in doubt: the upstream may still expect the body.
	rb.reuse = !resp.Close && !req.Close && !(body != nil && rb.bodyDone == nil)
	rb.rc = resp.Body
	resp.Body = rb
	return resp, nil
}

// staleOr reports a failure on a reused connection before any response byte as errStale.
func (c *Client) staleOr(cn *conn, err error) error {
	if cn.reused && cn.br.Buffered() == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)) {
		return fmt.Errorf("%w: %v", errStale, err)
	}
	return err
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// writeHead writes the request line and headers. It reports whether the body is chunked.
func writeHead(w *bufio.Writer, req *http.Request, hasBody bool) (chunked bool, err error) {
	uri := req.URL.RequestURI()
	if req.Method == http.MethodConnect {
		uri = req.Host
	}
	if !validMethod(req.Method) {
		return false, fmt.Errorf("invalid method %q", req.Method)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return false, fmt.Errorf("invalid Host header %q", host)
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			// Framing comes from the request's fields, never from a header that might
			// disagree with them.
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return false, fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false, fmt.Errorf("invalid value for header %q", k)
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(strings.TrimSpace(v))
			w.WriteString("\r\n")
		}
	}
	if hasBody {
		if req.ContentLength >= 0 && len(req.Trailer) == 0 {
			w.WriteString("Content-Length: ")
			w.WriteString(strconv.FormatInt(req.ContentLength, 10))
			w.WriteString("\r\n")
		} else {
			chunked = true
			if len(req.Trailer) > 0 {
				w.WriteString("Trailer: ")
				first := true
				for k := range req.Trailer {
					if !first {
						w.WriteString(", ")
					}
					first = false
					w.WriteString(k)
				}
				w.WriteString("\r\n")
			}
			w.WriteString("Transfer-Encoding: chunked\r\n")
		}
	} else if methodExpectsBody(req.Method) {
		w.WriteString("Content-Length: 0\r\n")
	}
	_, err = w.WriteString("\r\n")
	return chunked, err
}

func methodExpectsBody(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// writeBody streams the body, chunked or as is, then the trailers.
// read is set once the body has been read to its end, after which only writes to the
// upstream remain. A body of declared length (limit >= 0) ends with its last declared
// byte: read is set before that byte is flushed, so that an upstream answering at once
// finds the connection reusable, and bytes beyond the length are never sent.
func writeBody(w *bufio.Writer, body io.ReadCloser, chunked bool, limit int64, trailer http.Header, read *atomic.Bool) error {
	defer body.Close()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := body.Read(buf)
		if limit >= 0 && int64(n) >= limit {
			w.Write(buf[:limit])
			read.Store(true)
			return w.Flush()
		}
		limit -= int64(n)
		if n > 0 {
			if chunked {
				w.WriteString(strconv.FormatInt(int64(n), 16))
				w.WriteString("\r\n")
			}
			w.Write(buf[:n])
			if chunked {
				w.WriteString("\r\n")
			}
			// Flush each chunk: the upstream may be waiting for it (streaming uploads).
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			read.Store(true)
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if chunked {
		w.WriteString("0\r\n")
		for k, vv := range trailer {
			if !httpguts.ValidHeaderFieldName(k) {
				continue
			}
			for _, v := range vv {
				if httpguts.ValidHeaderFieldValue(v) {
					w.WriteString(k + ": " + v + "\r\n")
				}
			}
		}
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// bodyReader returns the connection to the pool once the response body has been read to
// its end and the request body was fully sent.
type bodyReader struct {
	c        *Client
	cn       *conn
	rc       io.ReadCloser
	stop     func() bool
	bodyDone chan error
	bodyRead atomic.Bool
	reuse    bool
	eof      bool
	closed   bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("read on closed response body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *bodyReader) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	reuse := b.reuse && b.eof
	if b.bodyDone != nil {
		if reuse && b.bodyRead.Load() {
			// The upstream answered in full and the client's body is all read: only the
			// last writes to the upstream remain, and the connection is reusable once
			// they succeed.
			if err := <-b.bodyDone; err != nil {
				reuse = false
			}
		} else {
			// Still uploading: the connection cannot carry another request, and waiting
			// could wait on the client forever. Closing it ends the upload.
			reuse = false
		}
	}
	if !b.stop() {
		// The request's context was cancelled: the deadline is set on the connection.
		reuse = false
	}
	if reuse {
		b.c.put(b.cn)
		return nil
	}
	return b.cn.nc.Close()
}

// upgraded is the connection after a 101 response, as the response body.
type upgraded struct{ cn *conn }

func (u *upgraded) Read(p []byte) (int, error)  { return u.cn.br.Read(p) }
func (u *upgraded) Write(p []byte) (int, error) { return u.cn.nc.Write(p) }
func (u *upgraded) Close() error                { return u.cn.nc.Close() }
