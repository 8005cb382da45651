package h1server

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// response is the http.ResponseWriter of a connection, reused by each of its requests.
//
// The head is written lazily, as net/http does: at the first Write of a response whose
// length is known, at the first Flush, or when the handler returns. A response of unknown
// length keeps its first pendSize bytes back; if the handler returns before writing more
// (and before flushing), the response goes out with a Content-Length, else chunked
// (HTTP/1.1) or delimited by closing the connection (HTTP/1.0).
type response struct {
	c    *conn
	req  *http.Request
	body *body

	header http.Header
	status int
	// wroteHeader: the final status is chosen; headDone: the head is in the write
	// buffer.
	wroteHeader, headDone bool
	chunking              bool
	contentLength         int64 // declared or set by the server, -1 unknown
	written               int64
	// pend is body held back before the head, in the connection's buffers; pendN
	// counts the bytes of a HEAD response, which are not kept.
	pend  []byte
	pendN int

	isHead, is11, bodyAllowed bool
	wants10KeepAlive          bool
	closeAfter                bool
	handlerDone               bool
	trailers                  []string

	// contMu orders the 100 Continue, written by the body's reader, with the head.
	contMu        sync.Mutex
	headStarted   bool
	wroteContinue bool
	// expect100: the request asked for 100 Continue.
	expect100 bool
}

func (w *response) reset(req *http.Request, b *body) {
	h := w.header
	if h == nil {
		h = make(http.Header)
	} else {
		clear(h)
	}
	trailers := w.trailers[:0]
	*w = response{c: w.c, req: req, body: b, header: h, trailers: trailers, contentLength: -1}
	w.isHead = req.Method == http.MethodHead
	w.is11 = req.ProtoMinor >= 1
	w.closeAfter = req.Close
	w.expect100 = b != nil && b.expect
	if !w.is11 && !req.Close {
		w.wants10KeepAlive = true
	}
	if w.c.srv.inShutdown.Load() {
		w.closeAfter = true
	}
}

func (w *response) Header() http.Header { return w.header }

func bodyAllowedForStatus(code int) bool {
	switch {
	case code >= 100 && code <= 199:
		return false
	case code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	return true
}

func (w *response) WriteHeader(code int) {
	if w.handlerDone {
		w.c.srv.logf("h1server: WriteHeader(%d) after the handler returned", code)
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader {
		w.c.srv.logf("h1server: superfluous WriteHeader(%d) call", code)
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.write1xx(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.bodyAllowed = bodyAllowedForStatus(code)
	if cl := w.header["Content-Length"]; len(cl) > 0 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			w.c.srv.logf("h1server: invalid Content-Length of %q", cl[0])
			delete(w.header, "Content-Length")
		}
	}
	if _, haveType := w.header["Content-Type"]; !w.bodyAllowed || w.contentLength >= 0 && haveType {
		// Nothing to learn from the body (its length, its type to sniff): the head can
		// be serialized now (it is sent with the body or at the end).
		w.writeHead(-1, nil)
	}
}

// write1xx sends an informational response at once, with the header as it is now.
func (w *response) write1xx(code int) {
	w.contMu.Lock()
	if code == http.StatusContinue {
		w.wroteContinue = true
	}
	c := w.c
	c.wbuf = appendStatusLine(c.wbuf, w.is11, code)
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		c.wbuf = appendField(c.wbuf, k, vv)
	}
	c.wbuf = append(c.wbuf, "\r\n"...)
	_ = c.flush()
	w.contMu.Unlock()
}

// writeContinue answers Expect: 100-continue, unless the final head went out.
func (w *response) writeContinue() {
	w.contMu.Lock()
	defer w.contMu.Unlock()
	if w.headStarted || w.wroteContinue {
		return
	}
	w.wroteContinue = true
	// Written directly: the write buffer belongs to the handler's goroutine.
	if _, err := w.c.rwc.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
		w.closeAfter = true
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.handlerDone {
		if w.c.hijacked {
			return 0, http.ErrHijacked
		}
		return 0, errors.New("h1server: Write after the handler returned")
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.isHead {
		w.written += int64(len(p))
		if !w.headDone {
			w.pendN += len(p)
		}
		return len(p), nil
	}
	if !w.headDone && w.contentLength >= 0 {
		w.writeHead(-1, p)
	}
	if !w.headDone {
		if len(w.pend)+len(p) <= pendSize {
			if w.pend == nil {
				w.pend = w.c.bufs.pend[:0]
			}
			w.pend = append(w.pend, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		if len(w.pend) > 0 {
			w.writeHead(-1, w.pend)
		} else {
			w.writeHead(-1, p)
		}
		if err := w.writeBody(w.pend); err != nil {
			return 0, err
		}
		w.pend = nil
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	w.written += int64(len(p))
	return len(p), nil
}

func (w *response) writeBody(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	c := w.c
	if !w.chunking {
		return c.write(p)
	}
	c.wbuf = strconv.AppendInt(c.wbuf, int64(len(p)), 16)
	c.wbuf = append(c.wbuf, "\r\n"...)
	if len(c.wbuf)+len(p)+2 <= cap(c.wbuf) {
		c.wbuf = append(c.wbuf, p...)
		c.wbuf = append(c.wbuf, "\r\n"...)
		return nil
	}
	if c.werr != nil {
		return c.werr
	}
	return c.writev(p, crlf)
}

var crlf = []byte("\r\n")

// Flush sends the head and what was written; http.Flusher.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports the error; http.ResponseController uses it.
func (w *response) FlushError() error {
	if w.handlerDone {
		return errors.New("h1server: Flush after the handler returned")
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headDone {
		w.writeHead(-1, w.pend)
		if err := w.writeBody(w.pend); err != nil {
			return err
		}
		w.pend = nil
	}
	return w.c.flush()
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	c := w.c
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.handlerDone = true
	if c.werr != nil || c.clientGone {
		// The client is gone: nothing to drain or write for it.
		w.closeAfter = true
		if w.body != nil {
			w.body.abort()
		}
		return
	}
	if !w.headDone {
		// The unread body is drained first: if it cannot be, the head still can say
		// "Connection: close".
		if w.body != nil && !w.body.drain() {
			w.closeAfter = true
		}
		if w.isHead {
			w.writeHead(int64(w.pendN), nil)
		} else {
			w.writeHead(int64(len(w.pend)), w.pend)
		}
		_ = w.writeBody(w.pend)
		w.pend = nil
	}
	if w.chunking {
		c.wbuf = append(c.wbuf, "0\r\n"...)
		w.appendTrailers()
		c.wbuf = append(c.wbuf, "\r\n"...)
	}
	if w.contentLength >= 0 && w.written < w.contentLength && !w.isHead && w.bodyAllowed {
		// Short of its length: the client must not wait for the rest.
		w.closeAfter = true
	}
	_ = c.flush()
	if w.body != nil && !w.body.drain() {
		w.closeAfter = true
	}
	w.pend = nil
}

func (w *response) appendTrailers() {
	c := w.c
	for _, k := range w.trailers {
		if vv, ok := w.header[k]; ok {
			c.wbuf = appendField(c.wbuf, k, vv)
		}
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if name := k[len(http.TrailerPrefix):]; httpguts.ValidTrailerHeader(name) {
				c.wbuf = appendField(c.wbuf, name, vv)
			}
		}
	}
}

// writeHead serializes the head into the write buffer. autoLength, when >= 0, is the
// whole body's length, known because the handler returned.
func (w *response) writeHead(autoLength int64, sniff []byte) {
	if w.headDone {
		return
	}
	w.headDone = true
	w.contMu.Lock()
	w.headStarted = true
	pending := w.expect100 && !w.wroteContinue
	w.contMu.Unlock()
	if pending {
		// The client still waits for 100 Continue: it will not send the body, so the
		// connection cannot be reused.
		w.closeAfter = true
	}

	h := w.header
	code := w.status
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	hasTrailers := false
	for _, v := range h["Trailer"] {
		hasTrailers = true
		for k := range strings.SplitSeq(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" && httpguts.ValidTrailerHeader(k) {
				w.trailers = append(w.trailers, k)
			}
		}
	}
	if !hasTrailers {
		for k := range h {
			if strings.HasPrefix(k, http.TrailerPrefix) {
				hasTrailers = true
				break
			}
		}
	}
	var te string
	if v := h["Transfer-Encoding"]; len(v) > 0 {
		te = v[0]
	}

	var setLength int64 = -1
	if autoLength >= 0 && w.bodyAllowed && !hasTrailers && te == "" && w.contentLength < 0 && (!w.isHead || autoLength > 0) {
		setLength = autoLength
		w.contentLength = autoLength
	}
	switch {
	case w.isHead || !w.bodyAllowed:
	case w.contentLength >= 0:
	case w.is11:
		if te == "identity" {
			w.closeAfter = true
		} else {
			w.chunking = true
		}
	default:
		// HTTP/1.0: the body ends when the connection closes.
		w.closeAfter = true
	}
	if w.c.srv.inShutdown.Load() {
		w.closeAfter = true
	}
	if w.closeAfter {
		w.wants10KeepAlive = false
	}

	c := w.c
	c.wbuf = appendStatusLine(c.wbuf, w.is11, code)
	_, haveDate := h["Date"]
	_, haveType := h["Content-Type"]
	for k, vv := range h {
		switch k {
		case "Transfer-Encoding":
			continue
		case "Content-Length":
			if !w.bodyAllowed {
				continue
			}
		case "Content-Type":
			if code == http.StatusNotModified {
				continue
			}
		case "Connection":
			if w.closeAfter && w.is11 {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		c.wbuf = appendField(c.wbuf, k, vv)
	}
	if !haveDate {
		c.wbuf = append(c.wbuf, "Date: "...)
		c.wbuf = appendDate(c.wbuf)
		c.wbuf = append(c.wbuf, "\r\n"...)
	}
	if setLength >= 0 {
		c.wbuf = append(c.wbuf, "Content-Length: "...)
		c.wbuf = strconv.AppendInt(c.wbuf, setLength, 10)
		c.wbuf = append(c.wbuf, "\r\n"...)
	}
	if w.chunking {
		c.wbuf = append(c.wbuf, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.bodyAllowed && !haveType && te == "" && len(sniff) > 0 && len(h["Content-Encoding"]) == 0 {
		c.wbuf = append(c.wbuf, "Content-Type: "...)
		c.wbuf = append(c.wbuf, http.DetectContentType(sniff)...)
		c.wbuf = append(c.wbuf, "\r\n"...)
	}
	if w.closeAfter && w.is11 {
		c.wbuf = append(c.wbuf, "Connection: close\r\n"...)
	} else if w.wants10KeepAlive {
		c.wbuf = append(c.wbuf, "Connection: keep-alive\r\n"...)
	}
	c.wbuf = append(c.wbuf, "\r\n"...)
}

// appendField appends "k: v\r\n" for each value, as net/http writes it: invalid names
// are dropped, CR and LF in values become spaces.
func appendField(dst []byte, k string, vv []string) []byte {
	if len(vv) == 0 {
		return dst
	}
	if !httpguts.ValidHeaderFieldName(k) {
		return dst
	}
	for _, v := range vv {
		dst = append(dst, k...)
		dst = append(dst, ": "...)
		if strings.ContainsAny(v, "\r\n") {
			v = strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' {
					return ' '
				}
				return r
			}, v)
		}
		dst = append(dst, strings.Trim(v, " \t")...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

var statusLines11, statusLines10 [600]string

func init() {
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			statusLines11[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
			statusLines10[code] = "HTTP/1.0 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
}

func appendStatusLine(dst []byte, is11 bool, code int) []byte {
	if code < 600 {
		line := statusLines10[code]
		if is11 {
			line = statusLines11[code]
		}
		if line != "" {
			return append(dst, line...)
		}
	}
	if is11 {
		dst = append(dst, "HTTP/1.1 "...)
	} else {
		dst = append(dst, "HTTP/1.0 "...)
	}
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, " status code "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	return append(dst, "\r\n"...)
}

// dateCache holds the Date value of the current second.
type dateCache struct {
	sec int64
	b   []byte
}

var curDate atomic.Pointer[dateCache]

func appendDate(dst []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	d := curDate.Load()
	if d == nil || d.sec != sec {
		d = &dateCache{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		curDate.Store(d)
	}
	return append(dst, d.b...)
}

// Hijack hands the connection to the handler; http.Hijacker. What the handler wrote is
// sent first; bytes the client sent after the request are in the returned reader.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if w.handlerDone || c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	c.stopWatch(true)
	if w.wroteHeader && !w.headDone {
		w.writeHead(-1, w.pend)
		_ = w.writeBody(w.pend)
		w.pend = nil
	}
	if err := c.flush(); err != nil {
		return nil, nil, fmt.Errorf("flushing before the hijack: %w", err)
	}
	w.handlerDone = true
	c.state.Store(stateHijacked)
	// Shutdown does not wait for hijacked connections.
	c.srv.trackConn(c, false)
	if w.body != nil {
		w.body.abort()
	}
	_ = c.rwc.SetDeadline(time.Time{})
	var rest []byte
	if c.hasByte {
		rest = append(rest, c.one[0])
		c.hasByte = false
	}
	rest = append(rest, c.rbuf[c.rpos:c.rend]...)
	c.rpos, c.rend = 0, 0
	var rc net.Conn = c.rwc
	var rd *bufio.Reader
	if len(rest) > 0 {
		rd = bufio.NewReader(&replayConn{Conn: c.rwc, pre: rest})
	} else {
		rd = bufio.NewReader(rc)
	}
	return rc, bufio.NewReadWriter(rd, bufio.NewWriter(rc)), nil
}

// SetReadDeadline sets the connection's read deadline, for the request body.
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.rdeadline = !t.IsZero()
	return w.c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline.
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex is always on with this server: the body stays readable while the
// response is written.
func (w *response) EnableFullDuplex() error { return nil }
