package h1server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Chunked body states.
const (
	chunkSize = iota // before a chunk-size line
	chunkData
	chunkCRLF // after a chunk's data
	chunkDone
)

// maxChunkLine bounds a chunk-size line with its extensions (net/http: 4096).
const maxChunkLine = 4096

// body is a request body. Its mutex is held during a Read, so that the server, when the
// handler returns, never reads the connection while a goroutine the handler left behind
// still does.
type body struct {
	c   *conn
	res *response
	req *http.Request

	mu        sync.Mutex
	chunked   bool
	state     int
	remaining int64 // of the body (Content-Length) or of the current chunk
	expect    bool  // 100 Continue goes out on the first Read
	sawEOF    bool
	// closed: the handler closed the body; done: the server took it back after the
	// handler. Reads fail after either.
	closed bool
	done   bool
	err    error
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed || b.done:
		return 0, http.ErrBodyReadAfterClose
	case b.err != nil:
		return 0, b.err
	case b.sawEOF:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	if b.expect {
		b.expect = false
		b.res.writeContinue()
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.readChunked(p)
	} else {
		n, err = b.readLength(p)
	}
	if err == io.EOF {
		b.sawEOF = true
		b.c.bodyEOF()
	} else if err != nil {
		b.err = err
	}
	return n, err
}

// Close marks the body closed; the server drains what is left, if it can, after the
// handler.
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (b *body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.c.readBody(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		return n, io.EOF
	}
	return n, err
}

func (b *body) readChunked(p []byte) (int, error) {
	n := 0
	for {
		switch b.state {
		case chunkSize:
			line, err := b.c.readLine(maxChunkLine, n == 0)
			if err != nil {
				return n, err
			}
			if line == nil {
				return n, nil // not buffered yet, and bytes to return
			}
			size, err := parseChunkSize(line)
			if err != nil {
				return n, err
			}
			if size == 0 {
				if err := b.readTrailer(); err != nil {
					return n, err
				}
				b.state = chunkDone
				return n, io.EOF
			}
			b.remaining = size
			b.state = chunkData
		case chunkData:
			if n == len(p) {
				return n, nil
			}
			if n > 0 && b.c.rend == b.c.rpos {
				return n, nil // do not wait for more with bytes in hand
			}
			q := p[n:]
			if int64(len(q)) > b.remaining {
				q = q[:b.remaining]
			}
			m, err := b.c.readBody(q)
			n += m
			b.remaining -= int64(m)
			if err != nil {
				return n, err
			}
			if b.remaining == 0 {
				b.state = chunkCRLF
			}
		case chunkCRLF:
			if b.c.rend-b.c.rpos < 2 {
				if n > 0 {
					return n, nil
				}
				if err := b.c.fillAtLeast(2); err != nil {
					return n, err
				}
			}
			if b.c.rbuf[b.c.rpos] != '\r' || b.c.rbuf[b.c.rpos+1] != '\n' {
				return n, errMalformedChunk
			}
			b.c.rpos += 2
			b.state = chunkSize
		case chunkDone:
			return n, io.EOF
		}
	}
}

// parseChunkSize parses a chunk-size line (CRLF removed) as net/http does: hex digits,
// then optional extensions after ';'.
func parseChunkSize(line []byte) (int64, error) {
	line = bytes.TrimRight(line, " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, errMalformedChunk
	}
	var n int64
	for _, c := range line {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, errMalformedChunk
		}
		n = n<<4 | int64(v)
	}
	if n < 0 {
		return 0, errMalformedChunk
	}
	return n, nil
}

// readTrailer reads the trailer section after the last chunk into the request's
// Trailer.
func (b *body) readTrailer() error {
	limit := b.c.srv.maxHeaderBytes()
	var sb strings.Builder
	for {
		line, err := b.c.readLineLF(limit - sb.Len())
		if err != nil {
			return err
		}
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			break
		}
		sb.Write(line)
	}
	if sb.Len() == 0 {
		return nil
	}
	s := sb.String()
	h, rerr := parseFields(s, strings.Count(s, "\n"))
	if rerr != nil {
		return errors.New("h1server: malformed trailer: " + rerr.msg)
	}
	for _, k := range []string{"Transfer-Encoding", "Content-Length", "Trailer", "Host"} {
		delete(h, k)
	}
	if b.req.Trailer == nil {
		b.req.Trailer = h
		return nil
	}
	for k, vv := range h {
		b.req.Trailer[k] = vv
	}
	return nil
}

// readLine returns the next CRLF-terminated line without its CRLF, a view of the read
// buffer valid until the next read. It refuses bare LF and a CR elsewhere (as net/http
// does for chunk lines). Without block, it returns nil when the line is not buffered.
func (c *conn) readLine(max int, block bool) ([]byte, error) {
	if !block && bytes.IndexByte(c.rbuf[c.rpos:c.rend], '\n') < 0 {
		return nil, nil
	}
	line, err := c.readLineLF(max)
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || bytes.IndexByte(line, '\r') != len(line)-2 {
		return nil, errMalformedChunk
	}
	return line[:len(line)-2], nil
}

// readLineLF returns the next line with its LF, reading as needed; a line longer than
// max fails.
func (c *conn) readLineLF(max int) ([]byte, error) {
	for {
		buf := c.rbuf[c.rpos:c.rend]
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			if i+1 > max {
				return nil, errLineTooLong
			}
			c.rpos += i + 1
			return buf[:i+1], nil
		}
		if len(buf) >= max {
			return nil, errLineTooLong
		}
		if err := c.fill(); err != nil {
			if err == errBufferFull {
				// A line longer than the buffer.
				nb := make([]byte, 2*len(c.rbuf))
				c.rend = copy(nb, c.rbuf[c.rpos:c.rend])
				c.rpos = 0
				c.rbuf = nb
				continue
			}
			return nil, bodyReadErr(err)
		}
	}
}

var errLineTooLong = errors.New("h1server: line too long")

// fillAtLeast reads until n bytes are buffered.
func (c *conn) fillAtLeast(n int) error {
	for c.rend-c.rpos < n {
		if err := c.fill(); err != nil {
			return bodyReadErr(err)
		}
	}
	return nil
}

// drain reads what the handler left of the body, up to maxDrainBytes, and closes the
// body. It reports whether the connection can serve another request.
func (b *body) drain() bool {
	if !b.mu.TryLock() {
		// A goroutine the handler started still reads the body: stop its read and
		// give up the connection, rather than wait for the client.
		_ = b.c.rwc.SetReadDeadline(aLongTimeAgo)
		b.mu.Lock()
		b.done = true
		b.mu.Unlock()
		return false
	}
	defer b.mu.Unlock()
	if b.done {
		return b.sawEOF
	}
	b.done = true
	switch {
	case b.sawEOF:
		return true
	case b.err != nil:
		return false
	case b.expect:
		// The client waits for 100 Continue before it sends the body: nothing to drain,
		// and nothing the server could read as the next request.
		return false
	}
	if d := b.c.srv.ReadHeaderTimeout; d > 0 {
		b.c.setReadDeadline(time.Now().Add(d))
	}
	var total int64
	var scratch []byte
	for total <= maxDrainBytes {
		if !b.chunked && b.c.rend > b.c.rpos {
			// Skip buffered bytes without copying them.
			n := min(int64(b.c.rend-b.c.rpos), b.remaining)
			b.c.rpos += int(n)
			b.remaining -= n
			total += n
			if b.remaining == 0 {
				b.sawEOF = true
				return true
			}
			continue
		}
		if scratch == nil {
			scratch = make([]byte, 4<<10)
		}
		var n int
		var err error
		if b.chunked {
			n, err = b.readChunked(scratch)
		} else {
			n, err = b.readLength(scratch)
		}
		total += int64(n)
		if err == io.EOF {
			b.sawEOF = true
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// abort closes the body after a handler panic.
func (b *body) abort() {
	if !b.mu.TryLock() {
		_ = b.c.rwc.SetReadDeadline(aLongTimeAgo)
		b.mu.Lock()
	}
	b.done = true
	b.mu.Unlock()
}
