package attrs

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"strings"

	"github.com/google/cel-go/interpreter"

	"github.com/sluice-gateway/sluice/internal/filter"
)

// Input is what attributes are evaluated against.
type Input struct {
	// Exchange gives the connection facts, the request id, start time and route. May be nil.
	Exchange *filter.Exchange
	// Request is the request as it stands; nil means Exchange.Request.
	Request *http.Request
	// Response is the response, nil on the request side (response.* is then unavailable).
	Response *http.Response
}

// activation resolves the attribute groups lazily, once per Eval, so that expressions that
// read only request.path never build the header map.
type activation struct {
	in    *Input
	cache map[string]map[string]any
}

var _ interpreter.Activation = (*activation)(nil)

func newActivation(in *Input) *activation {
	if in == nil {
		in = &Input{}
	}
	return &activation{in: in}
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) ResolveName(name string) (any, bool) {
	if m, ok := a.cache[name]; ok {
		return m, true
	}
	var m map[string]any
	switch name {
	case "request":
		m = a.request()
	case "response":
		m = a.response()
	case "source":
		m = addrMap(a.exchange().ClientAddr)
	case "destination":
		m = addrMap(a.exchange().LocalAddr)
	case "connection":
		m = connMap(a.exchange().TLS)
	case "xds":
		m = a.xds()
	default:
		return nil, false
	}
	if a.cache == nil {
		a.cache = make(map[string]map[string]any, 4)
	}
	a.cache[name] = m
	return m, true
}

var noExchange filter.Exchange

func (a *activation) exchange() *filter.Exchange {
	if a.in.Exchange == nil {
		return &noExchange
	}
	return a.in.Exchange
}

func (a *activation) request() map[string]any {
	ex := a.exchange()
	req := a.in.Request
	if req == nil {
		req = ex.Request
	}
	m := make(map[string]any, 14)
	if ex.ID != "" {
		m["id"] = ex.ID
	}
	if !ex.Start.IsZero() {
		m["time"] = ex.Start
	}
	if ex.Scheme != "" {
		m["scheme"] = ex.Scheme
	}
	if req == nil {
		return m
	}
	if _, ok := m["id"]; !ok {
		if id := req.Header.Get("X-Request-Id"); id != "" {
			m["id"] = id
		}
	}
	m["method"] = req.Method
	m["host"] = req.Host
	if req.URL != nil {
		m["path"] = req.URL.RequestURI()
		m["url_path"] = req.URL.EscapedPath()
		m["query"] = req.URL.RawQuery
	}
	hm := headerMap(req.Header, 4)
	// Envoy's request header map holds the pseudo-headers, not host.
	hm[":authority"] = req.Host
	hm[":method"] = req.Method
	if ex.Scheme != "" {
		hm[":scheme"] = ex.Scheme
	}
	if req.URL != nil {
		hm[":path"] = req.URL.RequestURI()
	}
	m["headers"] = hm
	if v := req.Header.Get("Referer"); v != "" {
		m["referer"] = v
	}
	if v := req.Header.Get("User-Agent"); v != "" {
		m["useragent"] = v
	}
	if p := protocol(req); p != "" {
		m["protocol"] = p
	}
	return m
}

func (a *activation) response() map[string]any {
	resp := a.in.Response
	if resp == nil {
		return map[string]any{}
	}
	return map[string]any{
		"code":    int64(resp.StatusCode),
		"headers": headerMap(resp.Header, 0),
	}
}

func (a *activation) xds() map[string]any {
	ex := a.exchange()
	m := make(map[string]any, 2)
	if ex.Route != "" {
		m["route_name"] = ex.Route
	}
	if ex.Backend != "" {
		m["cluster_name"] = ex.Backend
	}
	return m
}

// headerMap is Envoy's header attribute: lower-case names, values of a repeated header
// joined with ",". extra reserves room for the caller's pseudo-headers.
func headerMap(h http.Header, extra int) map[string]string {
	m := make(map[string]string, len(h)+extra)
	for k, vs := range h {
		m[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	return m
}

func protocol(req *http.Request) string {
	switch {
	case req.ProtoMajor == 2:
		return "HTTP/2"
	case req.ProtoMajor == 3:
		return "HTTP/3"
	case req.ProtoMajor == 1 && req.ProtoMinor == 1:
		return "HTTP/1.1"
	case req.ProtoMajor == 1 && req.ProtoMinor == 0:
		return "HTTP/1.0"
	}
	return ""
}

// addrMap is source.* or destination.*: address is "ip:port" as Envoy gives it.
func addrMap(ap netip.AddrPort) map[string]any {
	if !ap.IsValid() {
		return map[string]any{}
	}
	return map[string]any{"address": ap.String(), "port": int64(ap.Port())}
}

func connMap(cs *tls.ConnectionState) map[string]any {
	if cs == nil {
		return map[string]any{"mtls": false}
	}
	m := map[string]any{"mtls": len(cs.PeerCertificates) > 0}
	if v := tlsVersion(cs.Version); v != "" {
		m["tls_version"] = v
	}
	if cs.ServerName != "" {
		m["requested_server_name"] = cs.ServerName
	}
	return m
}

// tlsVersion spells versions as Envoy's connection.tls_version does.
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return ""
}
