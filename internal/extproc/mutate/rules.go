// Package mutate converts headers between net/http and Envoy's ext_proc messages and applies
// a processor's HeaderMutation under the policy's mutation rules, with Envoy's semantics
// (SPEC §3.4, §5b) and the data plane's conventions for Host and Content-Length.
package mutate

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// Rules is a compiled v1alpha1.MutationRules. The zero value and a nil *Rules are the
// defaults: routing headers and x-envoy-* are refused, everything else may change. The
// hard limits (pseudo-headers and host never removed, hop-by-hop and framing headers never
// set) hold whatever the rules say. A Rules is immutable and safe for concurrent use.
type Rules struct {
	allowAllRouting bool
	allowEnvoy      bool
	disallowSystem  bool
	disallowAll     bool
	disallowIsError bool
	allow, disallow *regexp.Regexp
}

// CompileRules compiles r; a nil r gives the defaults. Expressions must match the whole
// lower-case header name (Envoy's regex matchers are full matches).
func CompileRules(r *v1alpha1.MutationRules) (*Rules, error) {
	if r == nil {
		return &Rules{}, nil
	}
	out := &Rules{
		allowAllRouting: r.AllowAllRouting,
		allowEnvoy:      r.AllowEnvoy,
		disallowSystem:  r.DisallowSystem,
		disallowAll:     r.DisallowAll,
		disallowIsError: r.DisallowIsError,
	}
	var err error
	if out.allow, err = CompileFullMatch(r.AllowExpression); err != nil {
		return nil, fmt.Errorf("allowExpression: %w", err)
	}
	if out.disallow, err = CompileFullMatch(r.DisallowExpression); err != nil {
		return nil, fmt.Errorf("disallowExpression: %w", err)
	}
	return out, nil
}

// CompileFullMatch compiles an RE2 expression anchored at both ends, as Envoy's
// safe_regex matchers are. An empty expression gives nil (no expression configured).
func CompileFullMatch(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	if _, err := regexp.Compile(expr); err != nil {
		// Report the error against the expression as written, not the anchored form.
		return nil, fmt.Errorf("invalid RE2 expression %q: %w", expr, err)
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// verdict is what the rules say of one change.
type verdict int

const (
	allowed  verdict = iota
	rejected         // dropped and counted, or an error with disallowIsError
)

// check applies the configurable rules to the change of the lower-case header name.
// allowMethod lets :method through the routing rule (CONTINUE_AND_REPLACE).
func (r *Rules) check(name string, allowMethod bool) verdict {
	if r == nil {
		r = &defaultRules
	}
	if r.disallow != nil && r.disallow.MatchString(name) {
		return rejected
	}
	if r.allow != nil && r.allow.MatchString(name) {
		return allowed
	}
	if r.disallowAll {
		return rejected
	}
	switch name {
	case "host", ":authority", ":scheme":
		if !r.allowAllRouting {
			return rejected
		}
	case ":method":
		if !r.allowAllRouting && !allowMethod {
			return rejected
		}
	}
	if !r.allowEnvoy && strings.HasPrefix(name, "x-envoy-") {
		return rejected
	}
	if r.disallowSystem && strings.HasPrefix(name, ":") {
		return rejected
	}
	return allowed
}

func (r *Rules) isError() bool { return r != nil && r.disallowIsError }

var defaultRules Rules

// ForwardRules is a compiled v1alpha1.ForwardRules: which regular headers and trailers are
// sent to the processor. Pseudo-headers are always sent. A nil *ForwardRules sends all.
// A ForwardRules is immutable and safe for concurrent use.
type ForwardRules struct {
	allowNames    map[string]struct{}
	allowRes      []*regexp.Regexp
	disallowNames map[string]struct{}
	disallowRes   []*regexp.Regexp
}

// CompileForwardRules compiles r. Entries are header names (case-insensitive) or, with the
// prefix "re:", RE2 expressions matched against the whole lower-case name. A nil r, or one
// with both lists empty, gives nil: everything is forwarded.
func CompileForwardRules(r *v1alpha1.ForwardRules) (*ForwardRules, error) {
	if r == nil || (len(r.AllowedHeaders) == 0 && len(r.DisallowedHeaders) == 0) {
		return nil, nil
	}
	out := &ForwardRules{}
	var err error
	if out.allowNames, out.allowRes, err = compileMatchers(r.AllowedHeaders); err != nil {
		return nil, fmt.Errorf("allowedHeaders: %w", err)
	}
	if out.disallowNames, out.disallowRes, err = compileMatchers(r.DisallowedHeaders); err != nil {
		return nil, fmt.Errorf("disallowedHeaders: %w", err)
	}
	return out, nil
}

func compileMatchers(entries []string) (map[string]struct{}, []*regexp.Regexp, error) {
	var names map[string]struct{}
	var res []*regexp.Regexp
	for i, e := range entries {
		if expr, ok := strings.CutPrefix(e, "re:"); ok {
			re, err := CompileFullMatch(expr)
			if err != nil {
				return nil, nil, fmt.Errorf("[%d]: %w", i, err)
			}
			if re != nil {
				res = append(res, re)
			}
			continue
		}
		if names == nil {
			names = make(map[string]struct{}, len(entries))
		}
		names[strings.ToLower(e)] = struct{}{}
	}
	return names, res, nil
}

// Allowed reports whether the header lowerName may be sent: disallowed entries win, and a
// non-empty allow list admits only what it names. A nil receiver allows everything.
func (f *ForwardRules) Allowed(lowerName string) bool {
	if f == nil {
		return true
	}
	if matchAny(lowerName, f.disallowNames, f.disallowRes) {
		return false
	}
	if f.allowNames == nil && f.allowRes == nil {
		return true
	}
	return matchAny(lowerName, f.allowNames, f.allowRes)
}

func matchAny(name string, names map[string]struct{}, res []*regexp.Regexp) bool {
	if _, ok := names[name]; ok {
		return true
	}
	for _, re := range res {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}
