package h1server

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// requestError is a request the server refuses before the handler sees it; code 0 means
// the connection closes without an answer (the client went away or timed out).
type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return fmt.Sprintf("%d %s", e.code, e.msg) }

func badRequest(msg string) *requestError { return &requestError{http.StatusBadRequest, msg} }

var (
	errSilent   = &requestError{0, "connection closed or timed out"}
	errTooLarge = &requestError{http.StatusRequestHeaderFieldsTooLarge, "request head too large"}
)

// readHead reads up to the blank line that ends a head and returns the head, without
// that blank line, as one string: every string of the request is a substring of it.
func (c *conn) readHead() (string, *requestError) {
	limit := c.srv.maxHeaderBytes()
	deadlineSet := false
	scan := 0
	for {
		buf := c.rbuf[c.rpos:c.rend]
		// RFC 9112 2.2: empty lines before a request line are ignored.
		for len(buf) > 0 && scan == 0 {
			if buf[0] == '\n' {
				buf = buf[1:]
				c.rpos++
			} else if len(buf) >= 2 && buf[0] == '\r' && buf[1] == '\n' {
				buf = buf[2:]
				c.rpos += 2
			} else {
				break
			}
		}
		if len(buf) > 0 && !(len(buf) == 1 && buf[0] == '\r' && scan == 0) {
			for {
				i := bytes.IndexByte(buf[scan:], '\n')
				if i < 0 {
					scan = len(buf)
					break
				}
				i += scan
				rest := buf[i+1:]
				if len(rest) == 0 || (rest[0] == '\r' && len(rest) == 1) {
					scan = i // the line after this one is not known yet
					break
				}
				if rest[0] == '\n' || (rest[0] == '\r' && rest[1] == '\n') {
					end := i + 2
					if rest[0] == '\r' {
						end++
					}
					if end > limit {
						return "", errTooLarge
					}
					head := string(buf[:i+1])
					c.rpos += end
					// The idle or header deadline must not cut the body or the handler's
					// watch short.
					c.setReadDeadline(time.Time{})
					return head, nil
				}
				scan = i + 1
			}
		}
		if c.rend-c.rpos >= limit {
			return "", errTooLarge
		}
		if !deadlineSet {
			deadlineSet = true
			if d := c.srv.ReadHeaderTimeout; d > 0 {
				c.setReadDeadline(time.Now().Add(d))
			} else {
				c.setReadDeadline(time.Time{})
			}
		}
		if c.rend == len(c.rbuf) && c.rpos == 0 {
			// The head does not fit: a larger buffer, for this request only.
			nb := make([]byte, min(2*len(c.rbuf), limit+1))
			c.rend = copy(nb, c.rbuf[c.rpos:c.rend])
			c.rpos = 0
			c.rbuf = nb
		}
		if err := c.fill(); err != nil {
			return "", errSilent
		}
	}
}

// readRequest reads and checks the next request's head into req.
func (c *conn) readRequest(req *http.Request) (*body, *requestError) {
	head, rerr := c.readHead()
	if rerr != nil {
		return nil, rerr
	}
	if len(c.rbuf) != readBufSize && c.rend-c.rpos <= readBufSize {
		// Back to the pooled buffer once the large head is consumed.
		c.rend = copy(c.bufs.r[:], c.rbuf[c.rpos:c.rend])
		c.rpos = 0
		c.rbuf = c.bufs.r[:]
	}
	return c.parseRequest(head, req)
}

// parseRequest parses a head as net/http would, but refuses what a gateway must not
// pass: obsolete folding, bare CR, Content-Length with Transfer-Encoding.
// The caller's req does not escape: only the copy WithContext makes is on the heap.
func (c *conn) parseRequest(head string, req *http.Request) (*body, *requestError) {
	nl := strings.IndexByte(head, '\n')
	line := head[:nl]
	rest := head[nl+1:]
	line = strings.TrimSuffix(line, "\r")

	method, after, ok1 := strings.Cut(line, " ")
	uri, proto, ok2 := strings.Cut(after, " ")
	if !ok1 || !ok2 {
		return nil, badRequest("malformed request line")
	}
	if !validToken(method) {
		return nil, badRequest("invalid method")
	}
	switch proto {
	case "HTTP/1.1":
		req.ProtoMajor, req.ProtoMinor = 1, 1
	case "HTTP/1.0":
		req.ProtoMajor, req.ProtoMinor = 1, 0
	default:
		major, minor, ok := http.ParseHTTPVersion(proto)
		if !ok {
			return nil, badRequest("malformed HTTP version")
		}
		if major != 1 {
			return nil, &requestError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
		}
		req.ProtoMajor, req.ProtoMinor = major, minor
	}
	req.Method, req.RequestURI, req.Proto = method, uri, proto
	u, err := parseRequestURI(method, uri)
	if err != nil {
		return nil, badRequest("malformed request target")
	}
	req.URL = u

	h, rerr := parseFields(rest, strings.Count(rest, "\n"))
	if rerr != nil {
		return nil, rerr
	}
	req.Header = h

	hosts, haveHost := h["Host"]
	if len(hosts) > 1 {
		return nil, badRequest("too many Host headers")
	}
	if req.ProtoMinor >= 1 && !haveHost && method != "CONNECT" {
		return nil, badRequest("missing required Host header")
	}
	if haveHost && !httpguts.ValidHostHeader(hosts[0]) {
		return nil, badRequest("malformed Host header")
	}
	req.Host = u.Host
	if req.Host == "" && haveHost {
		req.Host = hosts[0]
	}
	delete(h, "Host")
	// As net/http (fixPragmaCacheControl): HTTP/1.0's "Pragma: no-cache" means
	// "Cache-Control: no-cache".
	if pr, ok := h["Pragma"]; ok && len(pr) > 0 && pr[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	conn := h["Connection"]
	if req.ProtoMinor == 0 {
		req.Close = !httpguts.HeaderValuesContainsToken(conn, "keep-alive") || httpguts.HeaderValuesContainsToken(conn, "close")
	} else {
		req.Close = httpguts.HeaderValuesContainsToken(conn, "close")
	}

	// Framing.
	te, hasTE := h["Transfer-Encoding"]
	cls, hasCL := h["Content-Length"]
	if hasTE && hasCL {
		// RFC 9112 6.3 lets a server repair this; a gateway refuses it, since another
		// server in the chain may read the length instead and take part of the body
		// for a second request.
		return nil, badRequest("Content-Length with Transfer-Encoding")
	}
	chunked := false
	if hasTE {
		delete(h, "Transfer-Encoding")
		// As net/http: HTTP/1.0 requests cannot be chunked; the field is ignored.
		if req.ProtoMinor >= 1 {
			if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
				return nil, &requestError{http.StatusNotImplemented, "unsupported transfer encoding"}
			}
			chunked = true
			req.TransferEncoding = []string{"chunked"}
		}
	}
	var length int64
	if hasCL {
		first := cls[0]
		for _, v := range cls[1:] {
			if v != first {
				return nil, badRequest("differing Content-Length values")
			}
		}
		if len(cls) > 1 {
			h["Content-Length"] = cls[:1:1]
		}
		n, ok := parseContentLength(first)
		if !ok {
			return nil, badRequest("bad Content-Length")
		}
		length = n
	}
	if chunked {
		length = -1
		if tv, ok := h["Trailer"]; ok {
			delete(h, "Trailer")
			var bad bool
			tr := make(http.Header)
			for _, v := range tv {
				for k := range strings.SplitSeq(v, ",") {
					k = strings.TrimSpace(k)
					if k == "" {
						continue
					}
					k = http.CanonicalHeaderKey(k)
					switch k {
					case "Transfer-Encoding", "Trailer", "Content-Length":
						bad = true
					}
					tr[k] = nil
				}
			}
			if bad {
				return nil, badRequest("bad trailer key")
			}
			if len(tr) > 0 {
				req.Trailer = tr
			}
		}
	}
	req.ContentLength = length
	req.RemoteAddr = c.remoteAddr

	expect := false
	if ev, ok := h["Expect"]; ok {
		if httpguts.HeaderValuesContainsToken(ev, "100-continue") {
			expect = req.ProtoMinor >= 1 && length != 0
		} else if len(ev) > 0 && ev[0] != "" {
			return nil, &requestError{http.StatusExpectationFailed, "unsupported expectation"}
		}
	}

	var b *body
	if length == 0 {
		req.Body = http.NoBody
	} else {
		b = &body{c: c, res: &c.res, chunked: chunked, remaining: length, expect: expect}
		req.Body = b
	}
	return b, nil
}

// parseContentLength parses a Content-Length value as net/http does: digits only.
func parseContentLength(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// parseFields parses header (or trailer) lines, each ending in LF or CRLF, into a map.
// All values share one backing array; names already canonical are substrings of s.
func parseFields(s string, lines int) (http.Header, *requestError) {
	h := make(http.Header, lines)
	vals := make([]string, 0, lines)
	for len(s) > 0 {
		nl := strings.IndexByte(s, '\n')
		if nl < 0 {
			nl = len(s)
		}
		line := s[:nl]
		s = s[min(nl+1, len(s)):]
		line = strings.TrimSuffix(line, "\r")
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, badRequest("obsolete line folding")
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, badRequest("malformed header line")
		}
		name, value := line[:colon], line[colon+1:]
		canonical, ok := checkName(name)
		if !ok {
			// Includes whitespace before the colon.
			return nil, badRequest("invalid header name")
		}
		value = trimOWS(value)
		if !validValue(value) {
			// Includes CR, LF and NUL.
			return nil, badRequest("invalid header value")
		}
		if !canonical {
			name = http.CanonicalHeaderKey(name)
		}
		if vv, ok := h[name]; ok {
			h[name] = append(vv, value)
			continue
		}
		vals = append(vals, value)
		h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return h, nil
}

// checkName reports whether name is a valid field name (a token) and whether it is
// already in canonical form.
func checkName(name string) (canonical, ok bool) {
	canonical = true
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isTokenByte(c) {
			return false, false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	return canonical, true
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// tokenTable marks the bytes of RFC 9110's tchar.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// pathByte marks the bytes url.URL keeps unescaped in a path.
var pathByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

func isTokenByte(c byte) bool { return tokenTable[c] }

// validValue reports whether v has no control bytes but HTAB (net/http's rule).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseRequestURI is url.ParseRequestURI (with net/http's handling of CONNECT's
// authority form) and a fast path for the common origin form that gives the same URL.
func parseRequestURI(method, uri string) (*url.URL, error) {
	if len(uri) > 0 && uri[0] == '/' {
		// The path must be what url would leave unescaped (else it sets RawPath); the
		// query may hold anything but control bytes.
		simple := true
		q := -1
		for i := 0; i < len(uri) && simple; i++ {
			c := uri[i]
			if q >= 0 {
				simple = c >= ' ' && c != 0x7f
			} else if c == '?' {
				q = i
			} else {
				simple = pathByte[c]
			}
		}
		if simple {
			u := &url.URL{Path: uri}
			if q >= 0 {
				u.Path, u.RawQuery = uri[:q], uri[q+1:]
				if q == len(uri)-1 {
					u.ForceQuery = true
				}
			}
			return u, nil
		}
	}
	justAuthority := method == "CONNECT" && !strings.HasPrefix(uri, "/")
	raw := uri
	if justAuthority {
		raw = "http://" + uri
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing the request target: %w", err)
	}
	if justAuthority {
		u.Scheme = ""
	}
	return u, nil
}

var errMalformedChunk = errors.New("h1server: malformed chunked encoding")
