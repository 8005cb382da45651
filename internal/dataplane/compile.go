package dataplane

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// Snapshot is one compiled, immutable configuration. The data plane reads it through one
// atomic pointer per request; a reload builds a new one and swaps the pointer, and requests
// in flight finish on the snapshot they started with.
type Snapshot struct {
	Config *ir.Config
	// Extra is served beside the config on the admin /config page (statuses, problems).
	Extra any

	ports map[ir.PortKey]*portTable
	certs map[ir.PortKey]*certTable
}

// FilterBuilder turns an attached external processor into a filter factory. The data plane
// does not know the processor's protocol; the caller wires it (see internal/extproc).
type FilterBuilder func(*ir.ExtProc) (filter.Factory, error)

// Compile builds a snapshot from a configuration. It fails only on what the translator
// cannot have checked (a certificate that does not parse, a processor that cannot be
// built); the old snapshot then keeps serving.
func Compile(cfg *ir.Config, ups *Upstreams, build FilterBuilder) (*Snapshot, error) {
	s := &Snapshot{Config: cfg, ports: make(map[ir.PortKey]*portTable), certs: make(map[ir.PortKey]*certTable)}
	var errs []error
	bals := make(map[*ir.Backend]*balancer)
	balancerFor := func(b *ir.Backend) *balancer {
		if b == nil {
			return nil
		}
		if bl, ok := bals[b]; ok {
			return bl
		}
		bl, err := newBalancer(b, ups)
		if err != nil {
			errs = append(errs, err)
		}
		bals[b] = bl
		return bl
	}
	filters := make(map[*ir.ExtProc]filter.Factory)
	filterFor := func(x *ir.ExtProc) filter.Factory {
		if x == nil || build == nil {
			return nil
		}
		if f, ok := filters[x]; ok {
			return f
		}
		f, err := build(x)
		if err != nil {
			errs = append(errs, fmt.Errorf("processor of policy %s: %w", x.Policy, err))
		}
		filters[x] = f
		return f
	}
	for _, p := range cfg.Ports {
		pt := &portTable{port: p}
		clients := make(map[*ir.Listener]*clientAuth)
		for _, l := range p.Listeners {
			client, err := compileClientAuth(l.ClientValidation)
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %s client validation: %w", l.Name, err))
			}
			clients[l] = client
			lt := &listenerTable{
				l:        l,
				hostname: strings.ToLower(l.Hostname),
				exact:    make(map[string]*vhost),
				wild:     make(map[string]*vhost),
				pre:      filterFor(l.PreRouting),
				client:   client,
			}
			for _, v := range l.VirtualHosts {
				vh := &vhost{hostname: strings.ToLower(v.Hostname)}
				for _, r := range v.Routes {
					rt, err := compileRoute(r, balancerFor, filterFor)
					if err != nil {
						errs = append(errs, fmt.Errorf("route %s: %w", r.Name, err))
						continue
					}
					vh.routes = append(vh.routes, rt)
				}
				switch {
				case vh.hostname == "" || vh.hostname == "*":
					lt.any = vh
				case strings.HasPrefix(vh.hostname, "*."):
					lt.wild[vh.hostname[1:]] = vh
				default:
					lt.exact[vh.hostname] = vh
				}
			}
			pt.listeners = append(pt.listeners, lt)
		}
		s.ports[p.Key()] = pt
		if p.Protocol == ir.ProtocolHTTPS {
			ct, err := compileCerts(p, clients)
			if err != nil {
				errs = append(errs, fmt.Errorf("port %s: %w", p.Key(), err))
			}
			s.certs[p.Key()] = ct
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func compileRoute(r *ir.Route, balancerFor func(*ir.Backend) *balancer, filterFor func(*ir.ExtProc) filter.Factory) (*route, error) {
	rt := &route{ir: r, pathType: r.Match.PathType, path: r.Match.Path, method: r.Match.Method}
	switch rt.pathType {
	case "":
		rt.pathType, rt.path = ir.PathPrefix, "/"
	case ir.PathPrefix:
		if rt.path != "/" {
			rt.path = strings.TrimSuffix(rt.path, "/")
		}
	case ir.PathRegex:
		re, err := regexp.Compile("^(?:" + rt.path + ")$")
		if err != nil {
			return nil, fmt.Errorf("path regular expression: %w", err)
		}
		rt.re = re
	}
	for _, h := range r.Match.Headers {
		m, err := compileValueMatcher(h, http.CanonicalHeaderKey(h.Name))
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", h.Name, err)
		}
		rt.headers = append(rt.headers, m)
	}
	for _, q := range r.Match.Query {
		m, err := compileValueMatcher(q, q.Name)
		if err != nil {
			return nil, fmt.Errorf("query parameter %s: %w", q.Name, err)
		}
		rt.query = append(rt.query, m)
	}
	rt.reqHeaders = compileHeaderOps(r.RequestHeaders)
	rt.respHeaders = compileHeaderOps(r.ResponseHeaders)
	cors, err := compileCORS(r.CORS)
	if err != nil {
		return nil, err
	}
	rt.cors = cors
	for _, b := range r.Backends {
		if b.Weight <= 0 {
			continue
		}
		rt.backends = append(rt.backends, weighted{weight: int(b.Weight), bal: balancerFor(b.Backend), metrics: new(metricsSlot),
			reqHeaders: compileHeaderOps(b.RequestHeaders), respHeaders: compileHeaderOps(b.ResponseHeaders)})
		rt.totalWeight += int(b.Weight)
	}
	for _, m := range r.Mirrors {
		if m.Backend == nil || m.Numerator <= 0 || m.Denominator <= 0 {
			continue
		}
		rt.mirrors = append(rt.mirrors, mirror{bal: balancerFor(m.Backend), num: m.Numerator, den: m.Denominator})
	}
	rt.extproc = filterFor(r.ExtProc)
	return rt, nil
}

func compileValueMatcher(m ir.StringMatch, name string) (valueMatcher, error) {
	vm := valueMatcher{name: name, value: m.Value}
	if m.Type == ir.MatchRegex {
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return vm, err
		}
		vm.re = re
	}
	return vm, nil
}

// headerOps is a compiled header modifier filter.
type headerOps struct {
	set    []ir.Header // canonical names
	add    []ir.Header
	remove []string
}

func compileHeaderOps(m *ir.HeaderModifier) *headerOps {
	if m == nil {
		return nil
	}
	canon := func(hs []ir.Header) []ir.Header {
		out := make([]ir.Header, len(hs))
		for i, h := range hs {
			out[i] = ir.Header{Name: http.CanonicalHeaderKey(h.Name), Value: h.Value}
		}
		return out
	}
	ops := &headerOps{set: canon(m.Set), add: canon(m.Add)}
	for _, n := range m.Remove {
		ops.remove = append(ops.remove, http.CanonicalHeaderKey(n))
	}
	return ops
}

func (o *headerOps) apply(h http.Header) {
	if o == nil {
		return
	}
	for _, s := range o.set {
		h[s.Name] = []string{s.Value}
	}
	for _, a := range o.add {
		h[a.Name] = append(h[a.Name], a.Value)
	}
	for _, r := range o.remove {
		delete(h, r)
	}
}

// certTable picks an HTTPS port's certificate by SNI, with the client validation of the
// listener it belongs to: the handshake asks for what that listener asks.
type certTable struct {
	exact map[string]*tlsEntry
	wild  map[string]*tlsEntry // by suffix after "*"
	def   *tlsEntry
}

// tlsEntry is the server side of a handshake for one listener.
type tlsEntry struct {
	cert   *tls.Certificate
	client *clientAuth // nil: no client certificate asked
}

func compileCerts(p *ir.Port, clients map[*ir.Listener]*clientAuth) (*certTable, error) {
	ct := &certTable{exact: make(map[string]*tlsEntry), wild: make(map[string]*tlsEntry)}
	for _, l := range p.Listeners {
		for _, c := range l.Certificates {
			cert, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
			if err != nil {
				return nil, fmt.Errorf("listener %s certificate %s: %w", l.Name, c.Name, err)
			}
			e := &tlsEntry{cert: &cert, client: clients[l]}
			host := strings.ToLower(l.Hostname)
			switch {
			case host == "":
				if ct.def == nil {
					ct.def = e
				}
			case strings.HasPrefix(host, "*."):
				if _, ok := ct.wild[host[1:]]; !ok {
					ct.wild[host[1:]] = e
				}
			default:
				if _, ok := ct.exact[host]; !ok {
					ct.exact[host] = e
				}
			}
			if ct.def == nil {
				ct.def = e
			}
		}
	}
	return ct, nil
}

func (ct *certTable) get(sni string) *tlsEntry {
	sni = normalizeHost(sni)
	if c, ok := ct.exact[sni]; ok {
		return c
	}
	for i := strings.IndexByte(sni, '.'); i > 0; {
		if c, ok := ct.wild[sni[i:]]; ok {
			return c
		}
		j := strings.IndexByte(sni[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return ct.def
}

func unescapeQuery(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}
