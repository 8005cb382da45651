package dataplane

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// portTable routes the requests of one listening port.
type portTable struct {
	port *ir.Port
	// listeners are most specific first, as in ir.Port.
	listeners []*listenerTable
}

// listenerTable routes the requests of one listener.
type listenerTable struct {
	l        *ir.Listener
	hostname string
	exact    map[string]*vhost
	// wild is keyed by the suffix after "*", such as ".example.com".
	wild map[string]*vhost
	any  *vhost
	pre  filter.Factory
	// client is the listener's client certificate validation; nil asks for none.
	client *clientAuth
}

type vhost struct {
	hostname string
	routes   []*route
}

// route is an ir.Route compiled for matching and serving.
type route struct {
	ir *ir.Route

	pathType ir.PathMatchType
	path     string
	re       *regexp.Regexp
	method   string
	headers  []valueMatcher
	query    []valueMatcher

	reqHeaders  *headerOps
	respHeaders *headerOps
	cors        *corsFilter

	backends    []weighted
	totalWeight int
	// mirrors get copies of the requests (mirror.go); unresolved ones are left out.
	mirrors []mirror
	extproc filter.Factory
}

type weighted struct {
	weight int
	bal    *balancer // nil: unresolved, answers 500
	// metrics caches the metric children of this route and backend.
	metrics *metricsSlot
	// reqHeaders and respHeaders are the backendRef's own header filters.
	reqHeaders, respHeaders *headerOps
}

type valueMatcher struct {
	name  string // canonical header name, or query parameter name
	value string
	re    *regexp.Regexp
}

func (m *valueMatcher) match(v string, ok bool) bool {
	if !ok {
		return false
	}
	if m.re != nil {
		return m.re.MatchString(v)
	}
	return v == m.value
}

// selectListener returns the listener of the port that serves host (normalized, see
// hostBuf).
func (p *portTable) selectListener(host []byte) *listenerTable {
	for _, l := range p.listeners {
		if hostnameMatches(l.hostname, host) {
			return l
		}
	}
	return nil
}

// hostnameMatches reports whether pattern ("" any, "*.suffix" wildcard, or exact) matches
// host. A wildcard matches one or more labels, never the bare suffix.
func hostnameMatches(pattern string, host []byte) bool {
	switch {
	case pattern == "":
		return true
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:]
		return len(host) > len(suffix) && string(host[len(host)-len(suffix):]) == suffix
	default:
		return string(host) == pattern
	}
}

// selectVhost returns the most specific virtual host for host: an exact name, then the
// longest wildcard, then the catch-all. Like Envoy, a request that the chosen virtual host
// does not route is not retried on a less specific one. Map lookups by string(host) do not
// allocate.
func (l *listenerTable) selectVhost(host []byte) *vhost {
	if v, ok := l.exact[string(host)]; ok {
		return v
	}
	if len(l.wild) > 0 {
		// Longest suffix first: walk the dots from the left, skipping the first label so
		// that a wildcard never matches its bare suffix.
		for i := bytes.IndexByte(host, '.'); i >= 0; {
			if v, ok := l.wild[string(host[i:])]; ok && i > 0 {
				return v
			}
			j := bytes.IndexByte(host[i+1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return l.any
}

// match returns the first route of the virtual host that matches r, in precedence order.
func (v *vhost) match(r *http.Request, path string) *route {
	for _, rt := range v.routes {
		if rt.matches(r, path) {
			return rt
		}
	}
	return nil
}

func (rt *route) matches(r *http.Request, path string) bool {
	switch rt.pathType {
	case ir.PathExact:
		if path != rt.path {
			return false
		}
	case ir.PathPrefix:
		if !prefixMatches(rt.path, path) {
			return false
		}
	case ir.PathRegex:
		if !rt.re.MatchString(path) {
			return false
		}
	}
	if rt.method != "" && r.Method != rt.method {
		return false
	}
	for i := range rt.headers {
		m := &rt.headers[i]
		vs := r.Header[m.name]
		var v string
		if len(vs) > 0 {
			v = vs[0]
		}
		if !m.match(v, len(vs) > 0) {
			return false
		}
	}
	for i := range rt.query {
		m := &rt.query[i]
		v, ok := queryValue(r.URL.RawQuery, m.name)
		if !m.match(v, ok) {
			return false
		}
	}
	return true
}

// prefixMatches matches path prefixes by whole segments: "/foo" matches "/foo" and
// "/foo/bar", never "/foobar". prefix carries no trailing slash, except the root "/".
func prefixMatches(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// queryValue returns the first value of the query parameter name without allocating,
// unless the query is escaped.
func queryValue(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			k = unescapeQuery(k)
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			v = unescapeQuery(v)
		}
		return v, true
	}
	return "", false
}

// pickBackend chooses a backendRef by weight. ok is false when every weight is 0.
func (rt *route) pickBackend() (w weighted, ok bool) {
	switch {
	case rt.totalWeight == 0:
		return weighted{}, false
	case len(rt.backends) == 1:
		return rt.backends[0], true
	}
	n := rand.IntN(rt.totalWeight)
	for _, b := range rt.backends {
		if n < b.weight {
			return b, true
		}
		n -= b.weight
	}
	return rt.backends[len(rt.backends)-1], true
}

// hostBuf holds a normalized host on the caller's stack, so that routing a request whose
// Host has upper-case letters allocates nothing.
type hostBuf [255]byte

// normalize returns host lower-cased, without its port and trailing dot, in b when it fits.
func (b *hostBuf) normalize(host string) []byte {
	host = stripPort(host)
	if len(host) > len(b) {
		return []byte(strings.ToLower(host))
	}
	out := b[:len(host)]
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// normalizeHost lower-cases host and strips its port and trailing dot, allocating only when
// the host has upper-case letters.
func normalizeHost(host string) string {
	host = stripPort(host)
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return strings.TrimSuffix(host, ".")
}
