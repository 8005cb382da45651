package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// net/http accepts two request forms that RFC 9112 lets a server repair but that Envoy
// refuses, because a server or proxy elsewhere in the chain may read them differently and
// take part of a body for a second request: Content-Length together with
// Transfer-Encoding, and obsolete line folding (a header line that starts with a space or
// a tab). net/http has no hook to see either once it has parsed a request (it drops the
// length and unfolds the lines), so a scanner follows the request framing on the raw byte
// stream of every HTTP/1 connection, and the handler refuses the requests it flagged.

// framingViolation says why the scanner flagged a request; it becomes the access log's
// details.
type framingViolation uint32

const (
	violationNone framingViolation = iota
	violationCLAndTE
	violationObsFold
)

func (v framingViolation) details() string {
	switch v {
	case violationCLAndTE:
		return "http1.content_length_and_chunked_not_allowed"
	case violationObsFold:
		return "http1.obs_fold_not_allowed"
	}
	return ""
}

// h1State is where the scanner is in the request stream.
type h1State uint8

const (
	// stStart is before a request line; the CR and LF that some clients send after a
	// body are skipped.
	stStart h1State = iota
	stReqLine
	stLineStart
	// stLineCR follows a CR at the start of a header line: the head ends if LF follows.
	stLineCR
	stName
	stValue
	stSkipLine
	stBody
	stChunkSize
	// stChunkExt is the rest of a chunk-size line after its digits: whitespace and
	// extensions, up to CRLF.
	stChunkExt
	stChunkExtCR
	stChunkData
	stChunkDataCR
	stChunkDataLF
	stTrailerStart
	stTrailerCR
	stTrailerSkip
	// stPass stops the scanner for the rest of the connection.
	stPass
)

// The header fields the scanner looks for, as bits of h1Scanner.cand.
const (
	hdrContentLength = 1 << iota
	hdrTransferEncoding
	hdrUpgrade
)

var hdrNames = [...]string{"content-length", "transfer-encoding", "upgrade"}

const connectMethod = "CONNECT "

// h1Scanner follows the framing of a stream of HTTP/1.x requests, as net/http reads it,
// and records the first request that has obsolete line folding or both Content-Length and
// Transfer-Encoding. Requests are numbered from 0 in the order they start on the
// connection; only the first flagged one matters, since the handler closes the connection
// when it refuses it. Wherever net/http would read the stream differently from the
// scanner, net/http fails the request and closes the connection, or the scanner stops:
// after a request it cannot follow (an unsupported coding, an invalid length, HTTP/2's
// preface), after CONNECT and Upgrade (the bytes after them may be another protocol), and
// after the first violation. Stopping only ever lets requests through, so a legitimate
// request is never refused. It allocates nothing and keeps O(1) state.
type h1Scanner struct {
	state h1State
	// bad is the index of the first flagged request plus one; 0 when none is.
	bad    atomic.Int64
	reason atomic.Uint32

	// heads counts the requests whose head has started.
	heads int64

	// The request line.
	lineLen   int
	tail      uint64 // its last 8 bytes, for the version
	pendingCR bool
	// methodPos counts the bytes of "CONNECT " matched so far, -1 after a mismatch.
	methodPos int

	// The current header line.
	cand    uint8 // header names still matching
	namePos int
	hdr     uint8 // the header whose value is being read
	// The value being read: a number for Content-Length, a match of "chunked" for
	// Transfer-Encoding.
	vNum    uint64
	vDigits int
	vTrail  bool
	vBad    bool

	// The head so far.
	sawCL, sawTE, sawUpgrade bool
	clBad, teNotChunked      bool
	teCount                  int
	clVal                    uint64

	// remaining bytes of a Content-Length body or of chunk data; chunk-size digits.
	remaining  uint64
	sizeDigits int
}

// flagged returns the violation of request i, if the scanner flagged it.
func (s *h1Scanner) flagged(i int64) framingViolation {
	if b := s.bad.Load(); b != 0 && i >= b-1 {
		return framingViolation(s.reason.Load())
	}
	return violationNone
}

func (s *h1Scanner) flag(v framingViolation) {
	s.reason.Store(uint32(v))
	s.bad.Store(s.heads) // heads already counts the current request: index + 1
	s.state = stPass
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isHex(c byte) (uint64, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0'), true
	case 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10, true
	case 'A' <= c && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}

const (
	http1Prefix = uint64('H')<<56 | uint64('T')<<48 | uint64('T')<<40 | uint64('P')<<32 |
		uint64('/')<<24 | uint64('1')<<16 | uint64('.')<<8
	http1Mask = ^uint64(0xff)
)

// scan follows p, the next bytes of the connection.
func (s *h1Scanner) scan(p []byte) {
	for i := 0; i < len(p) && s.state != stPass; {
		switch s.state {
		case stStart:
			if c := p[i]; c == '\r' || c == '\n' {
				i++
				continue
			}
			s.startHead()
		case stReqLine:
			i = s.reqLine(p, i)
		case stLineStart:
			c := p[i]
			i++
			switch c {
			case '\n':
				s.endHead()
			case '\r':
				s.state = stLineCR
			case ' ', '\t':
				s.flag(violationObsFold)
			default:
				s.cand = hdrContentLength | hdrTransferEncoding | hdrUpgrade
				s.namePos = 0
				s.state = stName
				s.nameByte(c)
			}
		case stLineCR:
			if p[i] == '\n' {
				i++
				s.endHead()
				continue
			}
			// A line starting with a bare CR is no header net/http accepts; it fails the
			// request.
			s.state = stSkipLine
		case stName:
			c := p[i]
			i++
			s.nameByte(c)
		case stValue:
			c := p[i]
			i++
			s.valueByte(c)
		case stSkipLine:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return
			}
			i += j + 1
			s.state = stLineStart
		case stBody:
			n := uint64(len(p) - i)
			if n < s.remaining {
				s.remaining -= n
				return
			}
			i += int(s.remaining)
			s.remaining = 0
			s.state = stStart
		case stChunkSize:
			c := p[i]
			i++
			if v, ok := isHex(c); ok {
				if s.sizeDigits == 16 {
					s.state = stPass // net/http refuses it: too large
					continue
				}
				s.remaining = s.remaining<<4 | v
				s.sizeDigits++
				continue
			}
			switch {
			case s.sizeDigits == 0:
				s.state = stPass
			case c == ';' || c == ' ' || c == '\t':
				s.state = stChunkExt
			case c == '\r':
				s.state = stChunkExtCR
			default:
				s.state = stPass
			}
		case stChunkExt:
			// net/http wants CRLF and no other CR on a chunk-size line.
			j := bytes.IndexAny(p[i:], "\r\n")
			if j < 0 {
				return
			}
			i += j
			if p[i] == '\n' {
				s.state = stPass
				continue
			}
			i++
			s.state = stChunkExtCR
		case stChunkExtCR:
			if p[i] != '\n' {
				s.state = stPass
				continue
			}
			i++
			if s.remaining == 0 {
				s.state = stTrailerStart
			} else {
				s.state = stChunkData
			}
		case stChunkData:
			n := uint64(len(p) - i)
			if n < s.remaining {
				s.remaining -= n
				return
			}
			i += int(s.remaining)
			s.remaining = 0
			s.state = stChunkDataCR
		case stChunkDataCR, stChunkDataLF:
			want := byte('\r')
			if s.state == stChunkDataLF {
				want = '\n'
			}
			if p[i] != want {
				s.state = stPass
				continue
			}
			i++
			if s.state == stChunkDataCR {
				s.state = stChunkDataLF
			} else {
				s.remaining, s.sizeDigits = 0, 0
				s.state = stChunkSize
			}
		case stTrailerStart:
			c := p[i]
			i++
			switch c {
			case '\n':
				s.state = stStart
			case '\r':
				s.state = stTrailerCR
			default:
				s.state = stTrailerSkip
			}
		case stTrailerCR:
			if p[i] == '\n' {
				i++
				s.state = stStart
				continue
			}
			s.state = stTrailerSkip
		case stTrailerSkip:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return
			}
			i += j + 1
			s.state = stTrailerStart
		}
	}
}

func (s *h1Scanner) startHead() {
	s.heads++
	s.lineLen, s.tail, s.pendingCR, s.methodPos = 0, 0, false, 0
	s.sawCL, s.sawTE, s.sawUpgrade = false, false, false
	s.clBad, s.teNotChunked, s.teCount, s.clVal = false, false, 0, 0
	s.state = stReqLine
}

// reqLine follows the request line from p[i], noting the method and the version, and
// returns where it stopped.
func (s *h1Scanner) reqLine(p []byte, i int) int {
	seg := p[i:]
	end := bytes.IndexByte(seg, '\n')
	if end >= 0 {
		seg = seg[:end]
	}
	if len(seg) > 0 {
		if s.pendingCR {
			s.shift('\r')
		}
		s.pendingCR = seg[len(seg)-1] == '\r'
		body := seg
		if s.pendingCR {
			body = seg[:len(seg)-1]
		}
		// The method is compared as it arrives, possibly over several reads.
		for k := 0; k < len(seg) && s.methodPos >= 0 && s.methodPos < len(connectMethod); k++ {
			if seg[k] != connectMethod[s.methodPos] {
				s.methodPos = -1
				break
			}
			s.methodPos++
		}
		for _, c := range body[max(0, len(body)-8):] {
			s.shift(c)
		}
		s.lineLen += len(seg)
	}
	if end < 0 {
		return len(p)
	}
	s.state = stLineStart
	return i + end + 1
}

func (s *h1Scanner) shift(c byte) { s.tail = s.tail<<8 | uint64(c) }

func (s *h1Scanner) nameByte(c byte) {
	if c == ':' {
		for h, name := range hdrNames {
			if bit := uint8(1) << h; s.cand&bit != 0 && s.namePos == len(name) {
				s.hdr = bit
				s.vNum, s.vDigits, s.vTrail, s.vBad = 0, 0, false, false
				s.state = stValue
				return
			}
		}
		s.state = stSkipLine
		return
	}
	if c == '\n' {
		// A line without a colon: net/http fails the request.
		s.state = stLineStart
		return
	}
	c = lower(c)
	for h, name := range hdrNames {
		if bit := uint8(1) << h; s.cand&bit != 0 && (s.namePos >= len(name) || name[s.namePos] != c) {
			s.cand &^= bit
		}
	}
	s.namePos++
	if s.cand == 0 {
		s.state = stSkipLine
	}
}

func (s *h1Scanner) valueByte(c byte) {
	if c == '\n' {
		s.state = stLineStart
		s.endValue() // may stop the scanner
		return
	}
	if c == ' ' || c == '\t' || c == '\r' {
		// A CR anywhere but before the LF makes the value invalid for net/http too.
		if s.vDigits > 0 {
			s.vTrail = true
		}
		return
	}
	if s.vTrail {
		s.vBad = true
		return
	}
	switch s.hdr {
	case hdrContentLength:
		if c < '0' || c > '9' || s.vNum > (math.MaxInt64-9)/10 {
			s.vBad = true
			return
		}
		s.vNum = s.vNum*10 + uint64(c-'0')
	case hdrTransferEncoding:
		const chunked = "chunked"
		if s.vDigits >= len(chunked) || lower(c) != chunked[s.vDigits] {
			s.vBad = true
			return
		}
	}
	s.vDigits++
}

func (s *h1Scanner) endValue() {
	switch s.hdr {
	case hdrContentLength:
		switch {
		case s.vBad || s.vDigits == 0:
			s.clBad = true
		case s.sawCL && s.clVal != s.vNum:
			s.clBad = true // net/http refuses differing lengths
		}
		s.sawCL, s.clVal = true, s.vNum
	case hdrTransferEncoding:
		s.sawTE = true
		s.teCount++
		if s.vBad || s.vDigits != len("chunked") {
			s.teNotChunked = true
		}
	case hdrUpgrade:
		s.sawUpgrade = true
	}
	if s.sawCL && s.sawTE {
		s.flag(violationCLAndTE)
	}
}

// endHead decides, at the blank line that ends a head, how its body is framed.
func (s *h1Scanner) endHead() {
	http1 := s.tail&http1Mask == http1Prefix && s.tail&0xff >= '0' && s.tail&0xff <= '9'
	http11 := http1 && s.tail&0xff != '0'
	switch {
	case !http1, s.methodPos == len(connectMethod), s.sawUpgrade, s.clBad:
		// HTTP/2's preface, a tunnel, another protocol, or a request net/http fails.
		s.state = stPass
	case s.sawTE && http11:
		// net/http ignores Transfer-Encoding on HTTP/1.0 requests, and fails those with
		// any coding but chunked alone.
		if s.teNotChunked || s.teCount > 1 {
			s.state = stPass
			return
		}
		s.remaining, s.sizeDigits = 0, 0
		s.state = stChunkSize
	case s.sawCL && s.clVal > 0:
		s.remaining = s.clVal
		s.state = stBody
	default:
		s.state = stStart
	}
}

// guardConn is a client connection whose HTTP/1 requests the scanner follows. Reads
// happen on one goroutine at a time (net/http's connection reader serializes them), so
// the scanner needs no lock; the handler reads only its atomics.
type guardConn struct {
	net.Conn
	scan h1Scanner
	// served counts the requests handed to the handler.
	served atomic.Int64
}

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.scan.state != stPass {
		c.scan.scan(p[:n])
	}
	return n, err
}

// CloseWrite lets net/http half-close the connection after a final response, so that the
// client reads the 400 before the connection resets.
func (c *guardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// next returns the violation of the request the handler is about to serve, if any.
func (c *guardConn) next() framingViolation {
	return c.scan.flagged(c.served.Add(1) - 1)
}

// tlsGuardConn is a guarded HTTP/1.1 connection over TLS; ConnectionState gives net/http
// the TLS state for Request.TLS.
type tlsGuardConn struct {
	guardConn
	tc *tls.Conn
}

func (c *tlsGuardConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

type guardConnKey struct{}

// connContext makes the guarded connection reachable from its requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	switch gc := c.(type) {
	case *guardConn:
		return context.WithValue(ctx, guardConnKey{}, gc)
	case *tlsGuardConn:
		return context.WithValue(ctx, guardConnKey{}, &gc.guardConn)
	}
	return ctx
}

// framingViolationOf returns the violation of the HTTP/1 request r, if its connection's
// scanner flagged it. It must be called once per request, in order.
func framingViolationOf(r *http.Request) framingViolation {
	if r.ProtoMajor != 1 {
		return violationNone
	}
	gc, _ := r.Context().Value(guardConnKey{}).(*guardConn)
	if gc == nil {
		return violationNone
	}
	return gc.next()
}

// guardListener guards every connection of a cleartext listener.
type guardListener struct{ net.Listener }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c}, nil
}

// tlsGuardListener completes the TLS handshake of each connection before net/http sees
// it, since the scanner needs the plaintext and net/http only serves HTTP/2 on a
// *tls.Conn: connections that negotiated h2 are handed over as they are (HTTP/2 frames
// requests itself), the others guarded.
type tlsGuardListener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
	log     *slog.Logger

	conns  chan net.Conn
	errc   chan error
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu              sync.Mutex
	started, closed bool
}

func newTLSGuardListener(ln net.Listener, cfg *tls.Config, timeout time.Duration, log *slog.Logger) *tlsGuardListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &tlsGuardListener{Listener: ln, cfg: cfg, timeout: timeout, log: log,
		conns: make(chan net.Conn), errc: make(chan error, 1), ctx: ctx, cancel: cancel}
}

func (l *tlsGuardListener) Accept() (net.Conn, error) {
	// The accept loop starts with the first Accept: a listener closed before serving
	// (a failed Apply) leaves no goroutine behind.
	l.mu.Lock()
	if !l.started && !l.closed {
		l.started = true
		l.wg.Add(1)
		go l.acceptLoop()
	}
	l.mu.Unlock()
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept fails the same way
		return nil, err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

func (l *tlsGuardListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.errc <- err
			return
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *tlsGuardListener) handshake(c net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(c, l.cfg)
	ctx := l.ctx
	if l.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			// As net/http does: a plaintext request gets a plaintext answer.
			_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		l.log.Debug("TLS handshake failed", "client", c.RemoteAddr().String(), "error", err)
		c.Close()
		return
	}
	var out net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		out = &tlsGuardConn{guardConn: guardConn{Conn: tc}, tc: tc}
	}
	select {
	case l.conns <- out:
	case <-l.ctx.Done():
		c.Close()
	}
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// Close stops accepting, aborts handshakes in progress and waits for them.
func (l *tlsGuardListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	err := l.Listener.Close()
	l.wg.Wait()
	return err
}
