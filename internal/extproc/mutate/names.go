package mutate

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// commonHeaders maps the canonical form of frequent header names to their lower-case form
// and back, so that converting them costs no allocation.
var (
	canonToLower = map[string]string{}
	lowerToCanon = map[string]string{}
)

func init() {
	for _, n := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Age", "Allow",
		"Authorization", "Cache-Control", "Connection", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Location",
		"Content-Range", "Content-Type", "Cookie", "Date", "Etag", "Expect", "Expires",
		"Forwarded", "From", "Grpc-Message", "Grpc-Status", "Grpc-Timeout", "Host",
		"If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
		"Keep-Alive", "Last-Modified", "Link", "Location", "Max-Forwards", "Origin", "Pragma",
		"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range", "Referer",
		"Refresh", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Te",
		"Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "Vary", "Via",
		"Www-Authenticate", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Request-Id", "X-Real-Ip", "Traceparent", "Tracestate",
	} {
		l := strings.ToLower(n)
		canonToLower[n] = l
		lowerToCanon[l] = n
	}
}

// lowerName returns the lower-case form of a canonical http.Header key.
func lowerName(canon string) string {
	if l, ok := canonToLower[canon]; ok {
		return l
	}
	return strings.ToLower(canon)
}

// canonName returns the http.Header key for a lower-case header name.
func canonName(lower string) string {
	if c, ok := lowerToCanon[lower]; ok {
		return c
	}
	return http.CanonicalHeaderKey(lower)
}

// neverSet are the hop-by-hop and framing headers: they describe one connection or the
// message framing the data plane owns, so a processor can never introduce them.
func neverSet(lower string) bool {
	switch lower {
	case "connection", "transfer-encoding", "te", "upgrade", "keep-alive",
		"proxy-connection", "trailer":
		return true
	}
	return false
}

// validName accepts a header name (RFC 9110 token) or a pseudo-header (":" + token).
func validName(name string) bool {
	if strings.HasPrefix(name, ":") {
		name = name[1:]
	}
	return name != "" && httpguts.ValidHeaderFieldName(name)
}

// validValue refuses control characters other than tab (CR, LF and NUL above all):
// net/http would refuse to send them, and they would split or truncate headers.
func validValue(v string) bool {
	return httpguts.ValidHeaderFieldValue(v)
}

func validValueBytes(v []byte) bool {
	for _, b := range v {
		if b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}
