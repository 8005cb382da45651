package translate

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// ruleState is one rule of an HTTPRoute: its routes, one per match, before they are placed
// on listeners and virtual hosts. Invalid rules have no routes.
type ruleState struct {
	index  int
	name   string
	field  string
	routes []*ir.Route
	// grpcRanks are the precedence of a GRPCRoute rule's routes (see grpcRank).
	grpcRanks map[*ir.Route]grpcRank
}

// ruleErrors collects the failures of one rule.
type ruleErrors struct {
	t      *translator
	rs     *routeState
	reason string // first Accepted failure reason; "" while the rule is valid
	msg    string
}

// fail records a problem that invalidates the rule.
func (e *ruleErrors) fail(field, reason, msg string) {
	m := e.t.problem(e.rs.kind, e.rs.key.Namespace, e.rs.key.Name, field, msg)
	if e.reason == "" {
		e.reason, e.msg = reason, m
	}
}

// warn records a problem that leaves the rule served (an ignored field).
func (e *ruleErrors) warn(field, msg string) {
	e.t.problem(e.rs.kind, e.rs.key.Namespace, e.rs.key.Name, field, msg)
}

// compileRules turns each rule of rs into routes, or records why it cannot be served.
func (t *translator) compileRules(rs *routeState) {
	names := map[string]bool{}
	rules := rs.route.Spec.Rules
	if len(rules) == 0 {
		// The CRD defaults an empty rules list to one rule matching every path, which
		// (having no backends) answers 500; file mode applies the same default so that
		// one YAML behaves the same in both modes.
		rules = []gwv1.HTTPRouteRule{{}}
	}
	for i := range rules {
		rule := &rules[i]
		st := &ruleState{index: i, field: fmt.Sprintf("spec.rules[%d]", i)}
		rs.rules = append(rs.rules, st)
		errs := &ruleErrors{t: t, rs: rs}
		for _, f := range rs.lowered[i] {
			errs.fail(f.field, f.reason, f.msg)
		}
		if rule.Name != nil {
			st.name = string(*rule.Name)
			if names[st.name] {
				errs.fail(st.field+".name", string(gwv1.RouteReasonUnsupportedValue),
					fmt.Sprintf("rule name %q is used twice", st.name))
			}
			names[st.name] = true
		}
		tmpl := t.compileRuleBody(rs, st, rule, errs)
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		var routes []*ir.Route
		for j := range matches {
			m, ok := compileMatch(&matches[j], fmt.Sprintf("%s.matches[%d]", st.field, j), errs)
			if !ok {
				continue
			}
			r := *tmpl
			r.Match = m
			r.Name = routeName(rs, st, j)
			routes = append(routes, &r)
			if rs.kind == KindGRPCRoute {
				if st.grpcRanks == nil {
					st.grpcRanks = map[*ir.Route]grpcRank{}
				}
				var rk grpcRank // a rule without matches matches every call
				if j < len(rs.grpcRanks[i]) {
					rk = rs.grpcRanks[i][j]
				}
				st.grpcRanks[&r] = rk
			}
		}
		if errs.reason != "" {
			if rs.invalidRule == nil {
				rs.invalidRule = &condState{reason: errs.reason, msg: errs.msg}
			}
			continue
		}
		st.routes = routes
		rs.validRules++
	}
}

// routeName is "namespace/route/rule/match", the rule by name when it has one.
func routeName(rs *routeState, st *ruleState, match int) string {
	rule := strconv.Itoa(st.index)
	if st.name != "" {
		rule = st.name
	}
	name := fmt.Sprintf("%s/%s/%s/%d", rs.key.Namespace, rs.key.Name, rule, match)
	if rs.kind == KindGRPCRoute {
		name = "grpc:" + name
	}
	return name
}

// compileRuleBody builds everything of a rule's routes but the match: filters, timeouts
// and backends.
func (t *translator) compileRuleBody(rs *routeState, st *ruleState, rule *gwv1.HTTPRouteRule, errs *ruleErrors) *ir.Route {
	r := &ir.Route{RuleIndex: st.index, RuleName: st.name}
	if rs.kind == KindGRPCRoute {
		r.GRPCRoute = rs.key.String()
	} else {
		r.HTTPRoute = rs.key.String()
	}
	compileFilters(rule, st.field, r, errs)
	t.compileMirrors(rs, st, rule, r, errs)
	compileTimeouts(rule, st.field, r, errs)
	compileRetry(rule, st.field, r, errs)
	if rule.SessionPersistence != nil {
		errs.warn(st.field+".sessionPersistence", "not supported; ignored")
	}
	if r.Redirect != nil {
		// A redirect answers by itself; the CEL rules of the CRD forbid backendRefs with it.
		if len(rule.BackendRefs) > 0 {
			errs.fail(st.field+".backendRefs", string(gwv1.RouteReasonIncompatibleFilters),
				"must be empty when the rule has a RequestRedirect filter")
		}
		if len(r.Mirrors) > 0 {
			errs.warn(st.field+".filters", "RequestMirror has no effect with RequestRedirect: the gateway answers the request itself")
			r.Mirrors = nil
		}
		return r
	}
	t.compileBackends(rs, st, rule, r, errs)
	return r
}

// compileMirrors validates the RequestMirror filters of a rule and resolves their
// backendRefs like the rule's own. A mirror whose backendRef does not resolve is dropped,
// as the API requires, and makes the route's ResolvedRefs false; the rule still serves.
func (t *translator) compileMirrors(rs *routeState, st *ruleState, rule *gwv1.HTTPRouteRule, r *ir.Route, errs *ruleErrors) {
	from := referrer{group: gwv1.GroupName, kind: rs.kind, namespace: rs.key.Namespace}
	for i := range rule.Filters {
		f := rule.Filters[i].RequestMirror
		if rule.Filters[i].Type != gwv1.HTTPRouteFilterRequestMirror || f == nil {
			continue // compileFilters reported it
		}
		field := fmt.Sprintf("%s.filters[%d].requestMirror", st.field, i)
		num, den, ok := mirrorShare(f, field, errs)
		if !ok {
			continue
		}
		b, rerr := t.resolveBackendRef(from, f.BackendRef)
		if rerr != nil {
			c := t.routeProblem(rs, field+".backendRef", rerr.reason, rerr.msg)
			if rs.unresolved == nil {
				rs.unresolved = c
			}
			continue
		}
		if num > 0 {
			r.Mirrors = append(r.Mirrors, ir.Mirror{Backend: rs.upstream(b), Numerator: num, Denominator: den})
		}
	}
}

// compileBackends resolves the backendRefs of a rule into weighted backends. A backend that
// does not resolve keeps its weight with a nil Backend, so the data plane answers 500 for
// its share; a rule with no backend at all answers 500 for every request.
func (t *translator) compileBackends(rs *routeState, st *ruleState, rule *gwv1.HTTPRouteRule, r *ir.Route, errs *ruleErrors) {
	from := referrer{group: gwv1.GroupName, kind: rs.kind, namespace: rs.key.Namespace}
	for k, ref := range rule.BackendRefs {
		field := fmt.Sprintf("%s.backendRefs[%d]", st.field, k)
		weight := int32(1)
		if ref.Weight != nil {
			weight = *ref.Weight
		}
		if weight < 0 || weight > 1000000 {
			errs.fail(field+".weight", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("weight %d is out of range 0-1000000", weight))
			continue
		}
		wb := ir.WeightedBackend{Weight: weight}
		if !backendFilters(ref.Filters, field, &wb, errs) {
			continue
		}
		b, rerr := t.resolveBackendRef(from, ref.BackendObjectReference)
		if rerr != nil {
			c := t.routeProblem(rs, field, rerr.reason, rerr.msg)
			if rs.unresolved == nil {
				rs.unresolved = c
			}
		}
		if weight == 0 {
			continue // no share of the traffic
		}
		wb.Backend = rs.upstream(b)
		r.Backends = append(r.Backends, wb)
	}
	if len(r.Backends) == 0 {
		r.Backends = []ir.WeightedBackend{{Weight: 1}}
	}
}

// durationRE is GEP-2257's duration syntax, a strict subset of Go's.
var durationRE = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

func parseDuration(d gwv1.Duration) (time.Duration, error) {
	if !durationRE.MatchString(string(d)) {
		return 0, fmt.Errorf("%q is not a duration like 10s, 1m30s or 500ms (GEP-2257)", d)
	}
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("%q: %w", d, err)
	}
	return v, nil
}

func compileTimeouts(rule *gwv1.HTTPRouteRule, field string, r *ir.Route, errs *ruleErrors) {
	if rule.Timeouts == nil {
		return
	}
	field += ".timeouts"
	if d := rule.Timeouts.Request; d != nil {
		v, err := parseDuration(*d)
		if err != nil {
			errs.fail(field+".request", string(gwv1.RouteReasonUnsupportedValue), err.Error())
		}
		r.RequestTimeout = v
	}
	if d := rule.Timeouts.BackendRequest; d != nil {
		v, err := parseDuration(*d)
		if err != nil {
			errs.fail(field+".backendRequest", string(gwv1.RouteReasonUnsupportedValue), err.Error())
		}
		r.BackendTimeout = v
	}
	if r.RequestTimeout > 0 && r.BackendTimeout > r.RequestTimeout {
		errs.fail(field+".backendRequest", string(gwv1.RouteReasonUnsupportedValue),
			fmt.Sprintf("backendRequest %s must not exceed request %s", r.BackendTimeout, r.RequestTimeout))
	}
}

// The retry defaults where the Gateway API leaves them to the implementation: Envoy's.
const (
	defaultRetryAttempts = 1
	defaultRetryBackoff  = 25 * time.Millisecond
)

func compileRetry(rule *gwv1.HTTPRouteRule, field string, r *ir.Route, errs *ruleErrors) {
	if rule.Retry == nil {
		return
	}
	field += ".retry"
	re := rule.Retry
	p := &ir.Retry{Attempts: defaultRetryAttempts, Backoff: defaultRetryBackoff}
	for j, c := range re.Codes {
		// The API requires 500, 502, 503 and 504 and allows any other 4xx or 5xx.
		if c < 400 || c > 599 {
			errs.fail(fmt.Sprintf("%s.codes[%d]", field, j), string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("status code %d is out of range 400-599", c))
			continue
		}
		p.Codes = append(p.Codes, int(c))
	}
	slices.Sort(p.Codes)
	p.Codes = slices.Compact(p.Codes)
	if re.Attempts != nil {
		// The CRD asks for at least 1; 0 (possible in file mode) is taken to mean no retry.
		if *re.Attempts < 0 {
			errs.fail(field+".attempts", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("attempts %d must not be negative", *re.Attempts))
		}
		p.Attempts = *re.Attempts
	}
	if d := re.Backoff; d != nil {
		v, err := parseDuration(*d)
		if err != nil {
			errs.fail(field+".backoff", string(gwv1.RouteReasonUnsupportedValue), err.Error())
		}
		p.Backoff = v
	}
	r.Retry = p
}

// upstream is backend b as rs's requests reach it: a GRPCRoute's over HTTP/2, cleartext
// with prior knowledge unless the backend asks for TLS (which offers h2 by ALPN).
func (rs *routeState) upstream(b *ir.Backend) *ir.Backend {
	if b == nil || rs.kind != KindGRPCRoute || b.Protocol != ir.UpstreamHTTP1 {
		return b
	}
	h2c := *b
	h2c.Protocol = ir.UpstreamH2C
	return &h2c
}
