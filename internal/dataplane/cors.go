package dataplane

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// The CORS headers, canonical: the data plane indexes header maps directly.
const (
	hdrOrigin         = "Origin"
	hdrRequestMethod  = "Access-Control-Request-Method"
	hdrRequestHeaders = "Access-Control-Request-Headers"
	hdrAllowOrigin    = "Access-Control-Allow-Origin"
	hdrAllowCreds     = "Access-Control-Allow-Credentials"
	hdrAllowMethods   = "Access-Control-Allow-Methods"
	hdrAllowHeaders   = "Access-Control-Allow-Headers"
	hdrExposeHeaders  = "Access-Control-Expose-Headers"
	hdrMaxAge         = "Access-Control-Max-Age"
	hdrVary           = "Vary"
)

// corsFilter is an ir.CORS compiled for serving: origins parsed once, header values
// joined once. Serving a request parses its Origin by slicing, without allocating.
type corsFilter struct {
	origins   []originMatcher
	anyOrigin bool
	// static is an AllowOrigins of "*" without credentials: every response gets
	// Access-Control-Allow-Origin: *, whatever its Origin, and needs no Vary.
	static      bool
	credentials bool
	// allowMethods and allowHeaders are the preflight's values ("" sends none); the echo
	// flags stand for a "*", answered with what the preflight asks for.
	allowMethods, allowHeaders string
	echoMethod, echoHeaders    bool
	expose                     string
	// exposeAll is an ExposeHeaders "*" with credentials, where browsers read "*" as a
	// header name: the response's own header names are listed instead.
	exposeAll bool
	maxAge    string
}

// originMatcher is one allowed origin other than "*".
type originMatcher struct {
	scheme string // lower case
	// host is lower case: a name, the suffix after "*" of a wildcard (".example.com"),
	// or "" for any host.
	host     string
	wildcard bool
	port     int
}

func compileCORS(c *ir.CORS) (*corsFilter, error) {
	if c == nil {
		return nil, nil
	}
	f := &corsFilter{credentials: c.AllowCredentials, maxAge: strconv.Itoa(int(c.MaxAge))}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			f.anyOrigin = true
			continue
		}
		scheme, host, port, ok := parseOrigin(o)
		if !ok {
			return nil, fmt.Errorf("CORS origin %q is not scheme://host[:port]", o)
		}
		m := originMatcher{scheme: strings.ToLower(scheme), host: strings.ToLower(host), port: port}
		switch {
		case m.host == "*":
			m.host = ""
		case strings.HasPrefix(m.host, "*."):
			m.host, m.wildcard = m.host[1:], true
		}
		f.origins = append(f.origins, m)
	}
	f.static = f.anyOrigin && !f.credentials
	f.echoMethod = slices.Contains(c.AllowMethods, "*")
	if !f.echoMethod {
		f.allowMethods = strings.Join(c.AllowMethods, ", ")
	}
	f.echoHeaders = slices.Contains(c.AllowHeaders, "*")
	if !f.echoHeaders {
		f.allowHeaders = strings.Join(c.AllowHeaders, ", ")
	}
	f.exposeAll = f.credentials && slices.Contains(c.ExposeHeaders, "*")
	if !f.exposeAll {
		f.expose = strings.Join(c.ExposeHeaders, ", ")
	}
	return f, nil
}

// parseOrigin splits a serialized origin, scheme://host[:port]. The port defaults to the
// scheme's (0 for schemes other than http and https); ok is false for anything else, such
// as "null" or an origin with a path.
func parseOrigin(o string) (scheme, host string, port int, ok bool) {
	scheme, host, ok = strings.Cut(o, "://")
	if !ok || scheme == "" || host == "" {
		return "", "", 0, false
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		p := host[i+1:]
		host = host[:i]
		if p == "" || len(p) > 5 || host == "" {
			return "", "", 0, false
		}
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return "", "", 0, false
			}
			port = port*10 + int(p[j]-'0')
		}
		if port < 1 || port > 65535 {
			return "", "", 0, false
		}
		return scheme, host, port, true
	}
	switch {
	case strings.EqualFold(scheme, "http"):
		port = 80
	case strings.EqualFold(scheme, "https"):
		port = 443
	}
	return scheme, host, port, true
}

func (m *originMatcher) matches(scheme, host string, port int) bool {
	if port != m.port || !strings.EqualFold(scheme, m.scheme) {
		return false
	}
	switch {
	case m.host == "":
		return true
	case m.wildcard:
		// Any number of labels left of the suffix, at least one: never the bare domain.
		n := len(host) - len(m.host)
		return n > 0 && strings.EqualFold(host[n:], m.host) && isHostChars(host[:n])
	default:
		return strings.EqualFold(host, m.host)
	}
}

// isHostChars reports whether s is made of the characters of DNS names, so that a
// wildcard never allows an origin such as "https://a.com/x.example.com".
func isHostChars(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// allowed reports whether a request with this Origin ("" none) may read the response.
func (c *corsFilter) allowed(origin string) bool {
	if origin == "" {
		return false
	}
	if c.anyOrigin {
		return true
	}
	scheme, host, port, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	for i := range c.origins {
		if c.origins[i].matches(scheme, host, port) {
			return true
		}
	}
	return false
}

// firstValue returns the first value of a header, by its canonical name.
func firstValue(h http.Header, name string) string {
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// isPreflight reports whether a request is a CORS preflight: OPTIONS with an Origin and
// an Access-Control-Request-Method. Other OPTIONS requests go to the backend.
func isPreflight(method string, h http.Header) bool {
	return method == http.MethodOptions && firstValue(h, hdrOrigin) != "" && firstValue(h, hdrRequestMethod) != ""
}

// preflight answers a preflight request itself, as Envoy does: the backend would not
// know the policy. The reply carries only the headers particular to preflights; respond
// adds the others, as to every response of the route, when the reply is written. A
// preflight from an origin not allowed gets 403 without CORS headers, one of the two
// answers the Gateway API allows: the browser fails the request either way, and the
// access log tells why.
func (c *corsFilter) preflight(origin string, req http.Header) *filter.LocalReply {
	if !c.allowed(origin) {
		return filter.Reply(http.StatusForbidden, "cors_origin_not_allowed", "CORS origin not allowed\n")
	}
	h := make(http.Header, 8)
	switch {
	case c.echoMethod:
		h[hdrAllowMethods] = []string{firstValue(req, hdrRequestMethod)}
	case c.allowMethods != "":
		h[hdrAllowMethods] = []string{c.allowMethods}
	}
	switch {
	case c.echoHeaders:
		if vs := req[hdrRequestHeaders]; len(vs) > 0 {
			h[hdrAllowHeaders] = []string{strings.Join(vs, ", ")}
		}
	case c.allowHeaders != "":
		h[hdrAllowHeaders] = []string{c.allowHeaders}
	}
	h[hdrMaxAge] = []string{c.maxAge}
	return &filter.LocalReply{Status: http.StatusOK, Header: h, Details: "cors_preflight"}
}

// respond adds the CORS headers to h, a response to a request with this Origin ("" none):
// the route's upstream responses, its local replies and its preflight answers. The
// upstream's own CORS headers are replaced when the origin is allowed and kept otherwise,
// as Envoy does. Applying it twice changes nothing.
func (c *corsFilter) respond(origin string, h http.Header) {
	if c == nil {
		return
	}
	if c.static {
		h[hdrAllowOrigin] = []string{"*"}
		if c.expose != "" {
			h[hdrExposeHeaders] = []string{c.expose}
		}
		return
	}
	// The response differs by Origin: a shared cache must not serve it to another.
	addVaryOrigin(h)
	if !c.allowed(origin) {
		return
	}
	h[hdrAllowOrigin] = []string{origin}
	if c.credentials {
		h[hdrAllowCreds] = []string{"true"}
	}
	switch {
	case c.exposeAll:
		if names := headerNames(h); names != "" {
			h[hdrExposeHeaders] = []string{names}
		}
	case c.expose != "":
		h[hdrExposeHeaders] = []string{c.expose}
	}
}

// addVaryOrigin adds Origin to the Vary header unless it is there, or Vary is "*".
func addVaryOrigin(h http.Header) {
	for _, v := range h[hdrVary] {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, hdrOrigin) {
				return
			}
		}
	}
	h[hdrVary] = append(h[hdrVary], hdrOrigin)
}

// headerNames lists the response's header names but the CORS ones, sorted so that the
// value does not change from one response to the next.
func headerNames(h http.Header) string {
	names := make([]string, 0, len(h))
	for k := range h {
		if !strings.HasPrefix(k, "Access-Control-") {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
