package h1client

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// readResponse reads a response head. The common case (HTTP/1.1, a final status, a
// Content-Length body, a head already wholly buffered) is parsed here with a handful of
// allocations: one string for the whole head, one array for the values, the map, the
// response and its body. Anything else (1xx, 101, 204, 304, HEAD, chunked or close-delimited
// bodies, trailers, Connection: close, duplicate or odd framing headers, obsolete line
// folding, invalid bytes) is left to http.ReadResponse, before any byte is consumed, so that
// its behaviour is net/http's exactly.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead || req.Method == http.MethodConnect {
		return http.ReadResponse(br, req)
	}
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				// As http.ReadResponse reports a connection closed before the status line.
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	if resp := parseSimpleResponse(br, req); resp != nil {
		return resp, nil
	}
	return http.ReadResponse(br, req)
}

// parseSimpleResponse parses the buffered head if it is of the simple kind and consumes
// it; otherwise it returns nil and consumes nothing.
func parseSimpleResponse(br *bufio.Reader, req *http.Request) *http.Response {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	raw := buf[:end+2] // every line with its CRLF
	// Status line: "HTTP/1.1 NNN reason".
	const proto = "HTTP/1.1 "
	if len(raw) < len(proto)+5 || string(raw[:len(proto)]) != proto {
		return nil
	}
	eol := bytes.IndexByte(raw, '\n')
	if eol < 0 || raw[eol-1] != '\r' {
		return nil
	}
	status := raw[len(proto) : eol-1]
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return nil
	}
	code := 0
	for _, c := range status[:3] {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil
	}
	for _, c := range status[3:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil
		}
	}
	lines := raw[eol+1:]
	n := bytes.Count(lines, []byte("\n"))
	// One string holds the whole head: keys, values and the status are slices of it.
	head := string(raw)
	off := eol + 1
	vals := make([]string, n)
	h := make(http.Header, n)
	contentLength := int64(-1)
	for i := 0; i < n; i++ {
		e := strings.IndexByte(head[off:], '\n')
		line := head[off : off+e]
		off += e + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return nil
		}
		line = line[:len(line)-1]
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			// Also refuses a line that starts with white space (obsolete folding).
			return nil
		}
		key, v := line[:colon], trimOWS(line[colon+1:])
		canonical := true
		upper := true
		for j := 0; j < len(key); j++ {
			c := key[j]
			if !httpguts.IsTokenRune(rune(c)) {
				return nil
			}
			switch {
			case upper && 'a' <= c && c <= 'z', !upper && 'A' <= c && c <= 'Z':
				canonical = false
			}
			upper = c == '-'
		}
		for j := 0; j < len(v); j++ {
			if c := v[j]; c < ' ' && c != '\t' || c == 0x7f {
				return nil
			}
		}
		if !canonical {
			key = http.CanonicalHeaderKey(key)
		}
		switch key {
		case "Transfer-Encoding", "Trailer":
			return nil
		case "Content-Length":
			if contentLength >= 0 {
				return nil
			}
			if contentLength = parseLength(v); contentLength < 0 {
				return nil
			}
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
				return nil
			}
		}
		vals[i] = v
		if prior, ok := h[key]; ok {
			h[key] = append(prior, v)
		} else {
			h[key] = vals[i : i+1 : i+1]
		}
	}
	if contentLength < 0 {
		return nil
	}
	if _, err := br.Discard(end + 4); err != nil {
		return nil // cannot happen: the bytes are buffered
	}
	resp := &http.Response{
		Status:        head[len(proto) : eol-1],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: contentLength,
		Request:       req,
	}
	if contentLength == 0 {
		resp.Body = http.NoBody
	} else {
		resp.Body = &lengthBody{r: br, n: contentLength}
	}
	return resp
}

// trimOWS trims the optional white space around a field value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseLength parses a Content-Length value: digits only, or -1.
func parseLength(s string) int64 {
	if s == "" || len(s) > 18 {
		return -1
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// lengthBody is a body of known length; it reports io.ErrUnexpectedEOF when the connection
// ends early, as net/http's does, and io.EOF with its last bytes.
type lengthBody struct {
	r *bufio.Reader
	n int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if b.n <= 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
