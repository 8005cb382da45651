package translate

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// redirectCodes are the status codes a RequestRedirect may use.
var redirectCodes = map[int]bool{301: true, 302: true, 303: true, 307: true, 308: true}

// compileFilters validates the filters of a rule and stores them on r. Each filter type
// but RequestMirror may appear once (the CRD's rules: one rule may mirror to several
// backends); RequestMirror filters are checked and resolved by compileMirrors, which
// needs the translator to resolve their backendRefs. RequestRedirect and URLRewrite exclude each other; a ReplacePrefixMatch
// needs the rule to have exactly one PathPrefix match. Filters Sluice does not implement
// invalidate the rule rather than being skipped: serving a route without, say, its
// authentication filter would be worse than not serving it.
func compileFilters(rule *gwv1.HTTPRouteRule, ruleField string, r *ir.Route, errs *ruleErrors) {
	seen := map[gwv1.HTTPRouteFilterType]bool{}
	for i := range rule.Filters {
		f := &rule.Filters[i]
		field := fmt.Sprintf("%s.filters[%d]", ruleField, i)
		if seen[f.Type] && f.Type != gwv1.HTTPRouteFilterRequestMirror {
			errs.fail(field+".type", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("filter %s is given twice", f.Type))
			continue
		}
		seen[f.Type] = true
		missing := func(name string) {
			errs.fail(field+"."+name, string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("required for filter type %s", f.Type))
		}
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			if f.RequestHeaderModifier == nil {
				missing("requestHeaderModifier")
				continue
			}
			r.RequestHeaders = headerModifier(f.RequestHeaderModifier, field+".requestHeaderModifier", errs)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			if f.ResponseHeaderModifier == nil {
				missing("responseHeaderModifier")
				continue
			}
			r.ResponseHeaders = headerModifier(f.ResponseHeaderModifier, field+".responseHeaderModifier", errs)
		case gwv1.HTTPRouteFilterRequestRedirect:
			if f.RequestRedirect == nil {
				missing("requestRedirect")
				continue
			}
			r.Redirect = redirect(f.RequestRedirect, field+".requestRedirect", errs)
		case gwv1.HTTPRouteFilterURLRewrite:
			if f.URLRewrite == nil {
				missing("urlRewrite")
				continue
			}
			r.Rewrite = rewrite(f.URLRewrite, field+".urlRewrite", errs)
		case gwv1.HTTPRouteFilterCORS:
			if f.CORS == nil {
				missing("cors")
				continue
			}
			r.CORS = cors(f.CORS, field+".cors", errs)
		case gwv1.HTTPRouteFilterRequestMirror:
			if f.RequestMirror == nil {
				missing("requestMirror")
			}
		default:
			errs.fail(field+".type", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("filter type %q is not supported, expected RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite or CORS", f.Type))
		}
	}
	if seen[gwv1.HTTPRouteFilterRequestRedirect] && seen[gwv1.HTTPRouteFilterURLRewrite] {
		errs.fail(ruleField+".filters", string(gwv1.RouteReasonIncompatibleFilters),
			"RequestRedirect and URLRewrite cannot be combined")
	}
	prefixRewrite := (r.Rewrite != nil && r.Rewrite.PathType == ir.ReplacePrefixMatch) ||
		(r.Redirect != nil && r.Redirect.Path != nil && r.Redirect.Path.PathType == ir.ReplacePrefixMatch)
	if prefixRewrite && !singlePrefixMatch(rule) {
		errs.fail(ruleField+".matches", string(gwv1.RouteReasonUnsupportedValue),
			"ReplacePrefixMatch needs exactly one match, of type PathPrefix")
	}
}

// backendFilters validates the filters of one backendRef and stores them on wb: the
// header modifiers, applied only to the requests sent to that backend and their
// responses. Other filter types make the backendRef invalid (reported false) rather than
// being skipped, as on rules.
func backendFilters(filters []gwv1.HTTPRouteFilter, refField string, wb *ir.WeightedBackend, errs *ruleErrors) bool {
	ok := true
	seen := map[gwv1.HTTPRouteFilterType]bool{}
	for i := range filters {
		f := &filters[i]
		field := fmt.Sprintf("%s.filters[%d]", refField, i)
		if seen[f.Type] {
			errs.fail(field+".type", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("filter %s is given twice", f.Type))
			ok = false
			continue
		}
		seen[f.Type] = true
		switch {
		case f.Type == gwv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
			wb.RequestHeaders = headerModifier(f.RequestHeaderModifier, field+".requestHeaderModifier", errs)
		case f.Type == gwv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
			wb.ResponseHeaders = headerModifier(f.ResponseHeaderModifier, field+".responseHeaderModifier", errs)
		case f.Type == gwv1.HTTPRouteFilterRequestHeaderModifier || f.Type == gwv1.HTTPRouteFilterResponseHeaderModifier:
			errs.fail(field, string(gwv1.RouteReasonUnsupportedValue), fmt.Sprintf("the %s settings are required for its type", f.Type))
			ok = false
		default:
			errs.fail(field+".type", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("filter type %q is not supported on a backendRef, expected RequestHeaderModifier or ResponseHeaderModifier", f.Type))
			ok = false
		}
	}
	return ok
}

// singlePrefixMatch reports whether the rule has exactly one match and it is a path
// prefix (the default match counts).
func singlePrefixMatch(rule *gwv1.HTTPRouteRule) bool {
	switch len(rule.Matches) {
	case 0:
		return true
	case 1:
		p := rule.Matches[0].Path
		return p == nil || p.Type == nil || *p.Type == gwv1.PathMatchPathPrefix
	}
	return false
}

func headerModifier(h *gwv1.HTTPHeaderFilter, field string, errs *ruleErrors) *ir.HeaderModifier {
	out := &ir.HeaderModifier{}
	check := func(f, name string) bool {
		if !tokenRE.MatchString(name) {
			errs.fail(f, string(gwv1.RouteReasonUnsupportedValue), fmt.Sprintf("%q is not a valid HTTP header name", name))
			return false
		}
		return true
	}
	for i, x := range h.Set {
		if check(fmt.Sprintf("%s.set[%d].name", field, i), string(x.Name)) {
			out.Set = append(out.Set, ir.Header{Name: string(x.Name), Value: x.Value})
		}
	}
	for i, x := range h.Add {
		if check(fmt.Sprintf("%s.add[%d].name", field, i), string(x.Name)) {
			out.Add = append(out.Add, ir.Header{Name: string(x.Name), Value: x.Value})
		}
	}
	for i, name := range h.Remove {
		if check(fmt.Sprintf("%s.remove[%d]", field, i), name) {
			out.Remove = append(out.Remove, name)
		}
	}
	return out
}

func redirect(f *gwv1.HTTPRequestRedirectFilter, field string, errs *ruleErrors) *ir.Redirect {
	out := &ir.Redirect{StatusCode: 302}
	if f.Scheme != nil {
		if *f.Scheme != "http" && *f.Scheme != "https" {
			errs.fail(field+".scheme", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("%q is not supported, expected http or https", *f.Scheme))
		}
		out.Scheme = *f.Scheme
	}
	if f.Hostname != nil {
		if err := validateHostname(string(*f.Hostname), false); err != nil {
			errs.fail(field+".hostname", string(gwv1.RouteReasonUnsupportedValue), err.Error())
		}
		out.Hostname = string(*f.Hostname)
	}
	if f.Port != nil {
		if *f.Port < 1 || *f.Port > 65535 {
			errs.fail(field+".port", string(gwv1.RouteReasonUnsupportedValue), fmt.Sprintf("port %d is out of range 1-65535", *f.Port))
		}
		out.Port = *f.Port
	}
	if f.StatusCode != nil {
		if !redirectCodes[*f.StatusCode] {
			errs.fail(field+".statusCode", string(gwv1.RouteReasonUnsupportedValue),
				fmt.Sprintf("%d is not supported, expected 301, 302, 303, 307 or 308", *f.StatusCode))
		}
		out.StatusCode = *f.StatusCode
	}
	if f.Path != nil {
		out.Path = pathModifier(f.Path, field+".path", errs)
	}
	return out
}

func rewrite(f *gwv1.HTTPURLRewriteFilter, field string, errs *ruleErrors) *ir.Rewrite {
	out := &ir.Rewrite{}
	if f.Hostname != nil {
		if err := validateHostname(string(*f.Hostname), false); err != nil {
			errs.fail(field+".hostname", string(gwv1.RouteReasonUnsupportedValue), err.Error())
		}
		out.Hostname = string(*f.Hostname)
	}
	if f.Path != nil {
		p := pathModifier(f.Path, field+".path", errs)
		out.PathType, out.Path = p.PathType, p.Path
	}
	return out
}

// pathModifier validates a ReplaceFullPath or ReplacePrefixMatch.
func pathModifier(p *gwv1.HTTPPathModifier, field string, errs *ruleErrors) *ir.Rewrite {
	out := &ir.Rewrite{PathType: ir.RewriteType(p.Type)}
	var value *string
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		value = p.ReplaceFullPath
		if p.ReplacePrefixMatch != nil {
			errs.fail(field+".replacePrefixMatch", string(gwv1.RouteReasonUnsupportedValue), "must not be set with type ReplaceFullPath")
		}
	case gwv1.PrefixMatchHTTPPathModifier:
		value = p.ReplacePrefixMatch
		if p.ReplaceFullPath != nil {
			errs.fail(field+".replaceFullPath", string(gwv1.RouteReasonUnsupportedValue), "must not be set with type ReplacePrefixMatch")
		}
	default:
		errs.fail(field+".type", string(gwv1.RouteReasonUnsupportedValue),
			fmt.Sprintf("%q is not supported, expected ReplaceFullPath or ReplacePrefixMatch", p.Type))
		return out
	}
	if value == nil {
		name := "replaceFullPath"
		if p.Type == gwv1.PrefixMatchHTTPPathModifier {
			name = "replacePrefixMatch"
		}
		errs.fail(field+"."+name, string(gwv1.RouteReasonUnsupportedValue), "required for type "+string(p.Type))
		return out
	}
	if err := validatePath(*value); err != nil {
		errs.fail(field, string(gwv1.RouteReasonUnsupportedValue), err.Error())
	}
	out.Path = *value
	return out
}

// corsOriginRE is the syntax of a CORS origin other than "*", as the Gateway API's
// CORSOrigin: scheme://host[:port], the host optionally "*" or starting with "*.". The
// port's range is checked apart.
var corsOriginRE = regexp.MustCompile(`^https?://(\*|(\*\.)?([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+)(:([0-9]{1,5}))?$`)

// corsMethods are the values of allowMethods besides "*".
var corsMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// defaultCORSMaxAge is the Access-Control-Max-Age when maxAge is not set (the CRD's
// default, which a file configuration does not get).
const defaultCORSMaxAge = 5

// cors validates a CORS filter. A "*" must stand alone in allowOrigins, allowMethods and
// allowHeaders, as the CRD's rules say: mixed with other values it would be unclear
// whether the others mean anything.
func cors(f *gwv1.HTTPCORSFilter, field string, errs *ruleErrors) *ir.CORS {
	out := &ir.CORS{MaxAge: f.MaxAge, AllowCredentials: f.AllowCredentials != nil && *f.AllowCredentials}
	bad := func(at, msg string) { errs.fail(at, string(gwv1.RouteReasonUnsupportedValue), msg) }
	alone := func(name string, n int, hasStar bool) {
		if hasStar && n > 1 {
			bad(field+"."+name, `"*" cannot be combined with other values`)
		}
	}
	star := false
	for i, o := range f.AllowOrigins {
		s := string(o)
		star = star || s == "*"
		if s != "*" {
			m := corsOriginRE.FindStringSubmatch(s)
			if m == nil {
				bad(fmt.Sprintf("%s.allowOrigins[%d]", field, i),
					fmt.Sprintf(`%q is not a valid origin, expected "*" or scheme://host[:port] with scheme http or https and host optionally starting with "*."`, s))
				continue
			}
			if p := m[5]; p != "" {
				if n, _ := strconv.Atoi(p); n < 1 || n > 65535 {
					bad(fmt.Sprintf("%s.allowOrigins[%d]", field, i), fmt.Sprintf("port %s is out of range 1-65535", p))
					continue
				}
			}
		}
		out.AllowOrigins = append(out.AllowOrigins, s)
	}
	alone("allowOrigins", len(f.AllowOrigins), star)
	star = false
	for i, m := range f.AllowMethods {
		s := string(m)
		star = star || s == "*"
		if s != "*" && !slices.Contains(corsMethods, s) {
			bad(fmt.Sprintf("%s.allowMethods[%d]", field, i),
				fmt.Sprintf(`%q is not supported, expected "*" or one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH (upper case)`, s))
			continue
		}
		out.AllowMethods = append(out.AllowMethods, s)
	}
	alone("allowMethods", len(f.AllowMethods), star)
	headers := func(name string, hs []gwv1.HTTPHeaderName) ([]string, bool) {
		var out []string
		star := false
		for i, h := range hs {
			s := string(h)
			star = star || s == "*"
			if !tokenRE.MatchString(s) {
				bad(fmt.Sprintf("%s.%s[%d]", field, name, i), fmt.Sprintf("%q is not a valid HTTP header name", s))
				continue
			}
			out = append(out, s)
		}
		return out, star
	}
	out.AllowHeaders, star = headers("allowHeaders", f.AllowHeaders)
	alone("allowHeaders", len(f.AllowHeaders), star)
	out.ExposeHeaders, _ = headers("exposeHeaders", f.ExposeHeaders)
	switch {
	case f.MaxAge == 0:
		out.MaxAge = defaultCORSMaxAge
	case f.MaxAge < 0:
		bad(field+".maxAge", fmt.Sprintf("%d is not valid, expected a number of seconds of at least 1", f.MaxAge))
	}
	return out
}

// mirrorShare validates the share of requests a RequestMirror copies: percent (0-100) or
// fraction (numerator at most a positive denominator, 100 by default), not both;
// neither is every request.
func mirrorShare(f *gwv1.HTTPRequestMirrorFilter, field string, errs *ruleErrors) (num, den int32, ok bool) {
	bad := func(at, msg string) { errs.fail(field+"."+at, string(gwv1.RouteReasonUnsupportedValue), msg) }
	switch {
	case f.Percent != nil && f.Fraction != nil:
		bad("fraction", "must not be set with percent")
		return 0, 0, false
	case f.Percent != nil:
		if p := *f.Percent; p < 0 || p > 100 {
			bad("percent", fmt.Sprintf("%d is out of range 0-100", p))
			return 0, 0, false
		}
		return *f.Percent, 100, true
	case f.Fraction != nil:
		num, den = f.Fraction.Numerator, 100
		if f.Fraction.Denominator != nil {
			den = *f.Fraction.Denominator
		}
		if den < 1 {
			bad("fraction.denominator", fmt.Sprintf("%d is not valid, expected at least 1", den))
			return 0, 0, false
		}
		if num < 0 || num > den {
			bad("fraction.numerator", fmt.Sprintf("%d is out of range 0-%d (the denominator)", num, den))
			return 0, 0, false
		}
		return num, den, true
	}
	return 1, 1, true
}
