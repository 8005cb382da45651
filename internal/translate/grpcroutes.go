package translate

import (
	"fmt"
	"regexp"
	"regexp/syntax"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// A GRPCRoute is served as the HTTPRoute it amounts to: gRPC calls are HTTP/2 POSTs to
// "/<service>/<method>", so a method match is a path match, and GRPCRoute's header
// matches, filters and backendRefs are HTTPRoute's under other names. lowerGRPCRoute
// writes that HTTPRoute; the translator then treats it as any other route, except that
// problems name the GRPCRoute's own fields, its backends are spoken to over HTTP/2
// (h2c unless TLS), and an HTTPRoute and a GRPCRoute never share a hostname on a
// listener (see attachListeners).

// The characters the CRD allows in an Exact service and method (the CEL rules of
// GRPCMethodMatch), checked here too for file mode.
var (
	grpcServiceRE = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	grpcMethodRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
)

// ruleFailure is a problem found while lowering a GRPCRoute rule, reported against the
// GRPCRoute's field when the rule is compiled.
type ruleFailure struct {
	field, reason, msg string
}

// grpcRank is what a GRPCRoute match's precedence depends on beyond its header matches:
// the characters of its service, then of its method (the GRPCRouteRule doc).
type grpcRank struct {
	service, method int
}

// lowerGRPCRoute returns the HTTPRoute that serves g, the problems of its rules by rule
// index (a rule with one is not served), and the rank of each lowered match by rule index.
func lowerGRPCRoute(g *gwv1.GRPCRoute) (*gwv1.HTTPRoute, map[int][]ruleFailure, map[int][]grpcRank) {
	h := &gwv1.HTTPRoute{ObjectMeta: g.ObjectMeta}
	h.Spec.ParentRefs = g.Spec.ParentRefs
	h.Spec.Hostnames = g.Spec.Hostnames
	fails := map[int][]ruleFailure{}
	ranks := map[int][]grpcRank{}
	rules := g.Spec.Rules
	if len(rules) == 0 {
		rules = []gwv1.GRPCRouteRule{{}} // as for HTTPRoute: one rule matching every call
	}
	for i := range rules {
		rule := &rules[i]
		field := fmt.Sprintf("spec.rules[%d]", i)
		hr := gwv1.HTTPRouteRule{Name: rule.Name, SessionPersistence: rule.SessionPersistence}
		for j := range rule.Matches {
			m, err := lowerGRPCMatch(&rule.Matches[j])
			if err != nil {
				fails[i] = append(fails[i], ruleFailure{fmt.Sprintf("%s.matches[%d].method", field, j),
					string(gwv1.RouteReasonUnsupportedValue), err.Error()})
				continue
			}
			hr.Matches = append(hr.Matches, m)
			var rk grpcRank
			if mm := rule.Matches[j].Method; mm != nil {
				rk = grpcRank{len(str(mm.Service)), len(str(mm.Method))}
			}
			ranks[i] = append(ranks[i], rk)
		}
		hr.Filters = lowerGRPCFilters(rule.Filters)
		for _, ref := range rule.BackendRefs {
			hr.BackendRefs = append(hr.BackendRefs, gwv1.HTTPBackendRef{BackendRef: ref.BackendRef, Filters: lowerGRPCFilters(ref.Filters)})
		}
		h.Spec.Rules = append(h.Spec.Rules, hr)
	}
	return h, fails, ranks
}

// lowerGRPCMatch turns a GRPCRouteMatch into the HTTPRouteMatch it amounts to.
func lowerGRPCMatch(m *gwv1.GRPCRouteMatch) (gwv1.HTTPRouteMatch, error) {
	var out gwv1.HTTPRouteMatch
	for _, h := range m.Headers {
		hm := gwv1.HTTPHeaderMatch{Name: gwv1.HTTPHeaderName(h.Name), Value: h.Value}
		if h.Type != nil {
			hm.Type = ptr(gwv1.HeaderMatchType(*h.Type))
		}
		out.Headers = append(out.Headers, hm)
	}
	mm := m.Method
	if mm == nil {
		return out, nil
	}
	typ := gwv1.GRPCMethodMatchExact
	if mm.Type != nil {
		typ = *mm.Type
	}
	service, method := str(mm.Service), str(mm.Method)
	if service == "" && method == "" {
		return out, fmt.Errorf("one or both of service and method must be set")
	}
	var path string
	pathType := gwv1.PathMatchRegularExpression
	switch typ {
	case gwv1.GRPCMethodMatchExact:
		if service != "" && !grpcServiceRE.MatchString(service) {
			return out, fmt.Errorf("service %q is not a gRPC service name (letters, digits and _, dot-separated)", service)
		}
		if method != "" && !grpcMethodRE.MatchString(method) {
			return out, fmt.Errorf("method %q is not a gRPC method name (letters, digits and _)", method)
		}
		switch {
		case method == "":
			// By segment: "/<service>" and everything under it.
			path, pathType = "/"+service, gwv1.PathMatchPathPrefix
		case service == "":
			path = "/[^/]+/" + regexp.QuoteMeta(method)
		default:
			path, pathType = "/"+service+"/"+method, gwv1.PathMatchExact
		}
	case gwv1.GRPCMethodMatchRegularExpression:
		// Each pattern matches the whole service or method; anchors are allowed but
		// redundant, and would never match inside the path the two are joined into.
		service, method = unanchor(service), unanchor(method)
		for _, p := range []struct{ name, re string }{{"service", service}, {"method", method}} {
			if _, err := regexp.Compile(p.re); err != nil {
				return out, fmt.Errorf("%s: invalid regular expression: %v", p.name, err)
			}
		}
		if service == "" {
			service = "[^/]+"
		}
		if method == "" {
			method = "[^/]+"
		}
		path = "/(?:" + service + ")/(?:" + method + ")"
	default:
		return out, fmt.Errorf("type %q is not supported, expected Exact or RegularExpression", typ)
	}
	out.Path = &gwv1.HTTPPathMatch{Type: &pathType, Value: &path}
	return out, nil
}

// lowerGRPCFilters turns GRPCRoute filters into HTTPRoute filters: the kinds GRPCRoute
// has bear the same names and fields there.
func lowerGRPCFilters(in []gwv1.GRPCRouteFilter) []gwv1.HTTPRouteFilter {
	var out []gwv1.HTTPRouteFilter
	for _, f := range in {
		out = append(out, gwv1.HTTPRouteFilter{
			Type:                   gwv1.HTTPRouteFilterType(f.Type),
			RequestHeaderModifier:  f.RequestHeaderModifier,
			ResponseHeaderModifier: f.ResponseHeaderModifier,
			RequestMirror:          f.RequestMirror,
			ExtensionRef:           f.ExtensionRef,
		})
	}
	return out
}

// unanchor drops the beginning- and end-of-text anchors at the edges of a regular
// expression (in every branch of an alternation, inside groups, whatever the flags): the
// pattern matches the whole service or method anyway, and an anchor left inside the path
// the two are joined into would never match. An expression that does not parse is left
// as it is, for the caller to report.
func unanchor(re string) string {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return re
	}
	if !stripAnchors(parsed) {
		return re
	}
	return parsed.String()
}

// stripAnchors removes leading ^ and trailing $ (and \A, \z) from r; it reports whether it
// removed any.
func stripAnchors(r *syntax.Regexp) bool {
	switch r.Op {
	case syntax.OpBeginText, syntax.OpEndText, syntax.OpBeginLine, syntax.OpEndLine:
		*r = syntax.Regexp{Op: syntax.OpEmptyMatch, Flags: r.Flags}
		return true
	case syntax.OpAlternate:
		changed := false
		for _, sub := range r.Sub {
			changed = stripAnchors(sub) || changed
		}
		return changed
	case syntax.OpCapture:
		return stripAnchors(r.Sub[0])
	case syntax.OpConcat:
		changed := false
		if first := r.Sub[0]; isBegin(first) {
			r.Sub, changed = r.Sub[1:], true
		} else if first.Op == syntax.OpCapture || first.Op == syntax.OpAlternate {
			changed = stripAnchors(first)
		}
		if len(r.Sub) > 0 {
			if last := r.Sub[len(r.Sub)-1]; isEnd(last) {
				r.Sub, changed = r.Sub[:len(r.Sub)-1], true
			} else if last.Op == syntax.OpCapture || last.Op == syntax.OpAlternate {
				changed = stripAnchors(last) || changed
			}
		}
		if len(r.Sub) == 0 {
			*r = syntax.Regexp{Op: syntax.OpEmptyMatch, Flags: r.Flags}
		}
		return changed
	}
	return false
}

func isBegin(r *syntax.Regexp) bool { return r.Op == syntax.OpBeginText || r.Op == syntax.OpBeginLine }
func isEnd(r *syntax.Regexp) bool   { return r.Op == syntax.OpEndText || r.Op == syntax.OpEndLine }

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
