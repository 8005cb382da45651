package translate

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// tokenRE is an HTTP field name (RFC 9110 token).
var tokenRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// methods are the methods an HTTPRouteMatch may name.
var methods = map[gwv1.HTTPMethod]bool{
	gwv1.HTTPMethodGet: true, gwv1.HTTPMethodHead: true, gwv1.HTTPMethodPost: true,
	gwv1.HTTPMethodPut: true, gwv1.HTTPMethodDelete: true, gwv1.HTTPMethodConnect: true,
	gwv1.HTTPMethodOptions: true, gwv1.HTTPMethodTrace: true, gwv1.HTTPMethodPatch: true,
}

// compileMatch applies the spec's defaults to one match and validates it: path PathPrefix
// "/", header and query matches Exact, regular expressions in RE2 syntax. Header names are
// canonicalised; of several matches on one header (names compared case-insensitively) or
// one query parameter (case-sensitively), only the first counts, as the spec requires.
func compileMatch(m *gwv1.HTTPRouteMatch, field string, errs *ruleErrors) (ir.Match, bool) {
	ok := true
	fail := func(f, msg string) {
		errs.fail(field+f, string(gwv1.RouteReasonUnsupportedValue), msg)
		ok = false
	}
	out := ir.Match{PathType: ir.PathPrefix, Path: "/"}
	if p := m.Path; p != nil {
		if p.Type != nil {
			out.PathType = ir.PathMatchType(*p.Type)
		}
		if p.Value != nil {
			out.Path = *p.Value
		}
		switch out.PathType {
		case ir.PathExact, ir.PathPrefix:
			if err := validatePath(out.Path); err != nil {
				fail(".path.value", err.Error())
			}
			if out.PathType == ir.PathPrefix && len(out.Path) > 1 {
				// "/foo/" and "/foo" match the same requests (by segment); one form keeps
				// precedence by length honest.
				out.Path = strings.TrimRight(out.Path, "/")
				if out.Path == "" {
					out.Path = "/"
				}
			}
		case ir.PathRegex:
			if _, err := regexp.Compile(out.Path); err != nil {
				fail(".path.value", fmt.Sprintf("invalid regular expression: %v", err))
			}
		default:
			fail(".path.type", fmt.Sprintf("%q is not supported, expected Exact, PathPrefix or RegularExpression", out.PathType))
		}
	}
	if m.Method != nil {
		if !methods[*m.Method] {
			fail(".method", fmt.Sprintf("%q is not an HTTP method the Gateway API allows", *m.Method))
		}
		out.Method = string(*m.Method)
	}
	seen := map[string]bool{}
	for i, h := range m.Headers {
		f := fmt.Sprintf(".headers[%d]", i)
		sm, err := stringMatch(string(h.Name), h.Value, (*string)(h.Type))
		if err != nil {
			fail(f, err.Error())
			continue
		}
		sm.Name = textproto.CanonicalMIMEHeaderKey(sm.Name)
		if seen[sm.Name] {
			continue
		}
		seen[sm.Name] = true
		out.Headers = append(out.Headers, sm)
	}
	seen = map[string]bool{}
	for i, q := range m.QueryParams {
		f := fmt.Sprintf(".queryParams[%d]", i)
		sm, err := stringMatch(string(q.Name), q.Value, (*string)(q.Type))
		if err != nil {
			fail(f, err.Error())
			continue
		}
		if seen[sm.Name] {
			continue
		}
		seen[sm.Name] = true
		out.Query = append(out.Query, sm)
	}
	return out, ok
}

// stringMatch validates a header or query parameter match.
func stringMatch(name, value string, typ *string) (ir.StringMatch, error) {
	sm := ir.StringMatch{Type: ir.MatchExact, Name: name, Value: value}
	if typ != nil {
		sm.Type = ir.StringMatchType(*typ)
	}
	if !tokenRE.MatchString(name) {
		return sm, fmt.Errorf("name %q is not a valid HTTP field name", name)
	}
	switch sm.Type {
	case ir.MatchExact:
	case ir.MatchRegex:
		if _, err := regexp.Compile(value); err != nil {
			return sm, fmt.Errorf("invalid regular expression: %v", err)
		}
	default:
		return sm, fmt.Errorf("type %q is not supported, expected Exact or RegularExpression", sm.Type)
	}
	return sm, nil
}

// validatePath checks an Exact or PathPrefix value as the CRD does.
func validatePath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q must start with /", p)
	case strings.Contains(p, "//"), strings.Contains(p, "/./"), strings.Contains(p, "/../"),
		strings.HasSuffix(p, "/."), strings.HasSuffix(p, "/.."):
		return fmt.Errorf("path %q must not contain empty, . or .. segments", p)
	case strings.ContainsAny(p, "?#"):
		return fmt.Errorf("path %q must not contain ? or #", p)
	case strings.Contains(strings.ToLower(p), "%2f"):
		return fmt.Errorf("path %q must not contain an encoded /", p)
	}
	return nil
}
