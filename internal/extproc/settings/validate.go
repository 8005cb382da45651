package settings

import (
	"errors"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/extproc/attrs"
	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
)

var (
	failureModes      = []string{string(v1alpha1.FailClosed), string(v1alpha1.FailOpen)}
	headerModes       = []string{string(v1alpha1.Send), string(v1alpha1.Skip)}
	bodyModeNames     = []string{string(v1alpha1.BodyNone), string(v1alpha1.BodyStreamed), string(v1alpha1.BodyBuffered), string(v1alpha1.BodyBufferedPartial), string(v1alpha1.BodyFullDuplexStreamed)}
	routeCacheActions = []string{string(v1alpha1.RouteCacheDefault), string(v1alpha1.RouteCacheClear), string(v1alpha1.RouteCacheRetain)}
	headerValueFields = []string{string(v1alpha1.HeaderValueRaw), string(v1alpha1.HeaderValueString), string(v1alpha1.HeaderValueBoth)}
)

// Validate checks every field of spec (backendRef excepted: the translator resolves it)
// and returns one error per invalid field, with its path under fldPath (nil = relative to
// the extProc itself). It repeats the CRD's CEL rules, because file mode has no API server
// to enforce them. A nil or Disabled spec is valid: its other fields are ignored.
func Validate(spec *v1alpha1.ExtProc, fldPath *field.Path) field.ErrorList {
	if spec == nil || spec.Disabled {
		return nil
	}
	var errs field.ErrorList
	enum := func(p *field.Path, v string, valid []string) {
		if v != "" && !slices.Contains(valid, v) {
			errs = append(errs, field.NotSupported(p, v, valid))
		}
	}
	enum(fldPath.Child("failureMode"), string(spec.FailureMode), failureModes)
	if s := spec.StatusOnError; s != nil && (*s < 200 || *s > 599) {
		errs = append(errs, field.Invalid(fldPath.Child("statusOnError"), *s, "must be an HTTP status between 200 and 599"))
	}
	if d := spec.MessageTimeout; d != nil && d.Duration < 0 {
		errs = append(errs, field.Invalid(fldPath.Child("messageTimeout"), d.Duration.String(), "must be 0s or more"))
	}
	if d := spec.MaxMessageTimeout; d != nil && d.Duration < 0 {
		errs = append(errs, field.Invalid(fldPath.Child("maxMessageTimeout"), d.Duration.String(), "must be 0s or more"))
	}
	errs = append(errs, validateOptions(spec, fldPath)...)
	if q := spec.MaxBufferSize; q != nil && q.Sign() <= 0 {
		errs = append(errs, field.Invalid(fldPath.Child("maxBufferSize"), q.String(), "must be greater than 0 (for example 1Mi)"))
	}
	if r := spec.MutationRules; r != nil {
		p := fldPath.Child("mutationRules")
		regex(&errs, p.Child("allowExpression"), r.AllowExpression)
		regex(&errs, p.Child("disallowExpression"), r.DisallowExpression)
	}
	if r := spec.ForwardRules; r != nil {
		p := fldPath.Child("forwardRules")
		headerMatchers(&errs, p.Child("allowedHeaders"), r.AllowedHeaders)
		headerMatchers(&errs, p.Child("disallowedHeaders"), r.DisallowedHeaders)
	}
	celMap(&errs, fldPath.Child("requestAttributes"), spec.RequestAttributes, false)
	celMap(&errs, fldPath.Child("responseAttributes"), spec.ResponseAttributes, true)
	for _, ns := range sortedKeys(spec.MetadataContext) {
		p := fldPath.Child("metadataContext").Key(ns)
		if ns == "" {
			errs = append(errs, field.Invalid(p, ns, "must be a non-empty metadata namespace"))
		}
		celMap(&errs, p, spec.MetadataContext[ns], false)
	}
	for _, k := range sortedKeys(spec.GRPCInitialMetadata) {
		p := fldPath.Child("grpcInitialMetadata").Key(k)
		if msg := grpcKeyProblem(k); msg != "" {
			errs = append(errs, field.Invalid(p, k, msg))
		} else if v := spec.GRPCInitialMetadata[k]; !strings.HasSuffix(k, "-bin") && !printableASCII(v) {
			errs = append(errs, field.Invalid(p, v, "must be printable ASCII (binary values need a key ending in -bin)"))
		}
	}
	enum(fldPath.Child("routeCacheAction"), string(spec.RouteCacheAction), routeCacheActions)
	enum(fldPath.Child("headerValueField"), string(spec.HeaderValueField), headerValueFields)
	return errs
}

func validateOptions(spec *v1alpha1.ExtProc, fldPath *field.Path) field.ErrorList {
	po := spec.ProcessingOptions
	fullDuplex := po != nil && (po.RequestBodyMode == v1alpha1.BodyFullDuplexStreamed || po.ResponseBodyMode == v1alpha1.BodyFullDuplexStreamed)
	var errs field.ErrorList
	if spec.FailureMode == v1alpha1.FailOpen && fullDuplex {
		errs = append(errs, field.Invalid(fldPath.Child("failureMode"), string(spec.FailureMode),
			"must be FailClosed when a body mode is FullDuplexStreamed (a half-streamed body cannot fail open)"))
	}
	if po == nil {
		return errs
	}
	p := fldPath.Child("processingOptions")
	errs = append(errs, validateMode(p, po.RequestHeaderMode, po.ResponseHeaderMode, po.RequestTrailerMode,
		po.ResponseTrailerMode, po.RequestBodyMode, po.ResponseBodyMode)...)
	if spec.ObservabilityMode {
		for _, b := range []struct {
			name string
			mode v1alpha1.BodySendMode
		}{{"requestBodyMode", po.RequestBodyMode}, {"responseBodyMode", po.ResponseBodyMode}} {
			if b.mode != "" && b.mode != v1alpha1.BodyNone && b.mode != v1alpha1.BodyStreamed && slices.Contains(bodyModeNames, string(b.mode)) {
				errs = append(errs, field.Invalid(p.Child(b.name), string(b.mode), "must be None or Streamed when observabilityMode is true"))
			}
		}
	}
	if len(po.AllowedOverrideModes) > 0 && !po.AllowModeOverride {
		errs = append(errs, field.Invalid(p.Child("allowedOverrideModes"), len(po.AllowedOverrideModes),
			"must be empty unless allowModeOverride is true"))
	}
	for i, m := range po.AllowedOverrideModes {
		errs = append(errs, validateMode(p.Child("allowedOverrideModes").Index(i), m.RequestHeaderMode,
			m.ResponseHeaderMode, m.RequestTrailerMode, m.ResponseTrailerMode, m.RequestBodyMode, m.ResponseBodyMode)...)
	}
	return errs
}

// validateMode checks one set of modes: enum values, and FullDuplexStreamed bodies with
// their trailers sent (the end of a full-duplex body is only known from the trailers).
func validateMode(p *field.Path, reqH, respH, reqT, respT v1alpha1.HeaderSendMode, reqB, respB v1alpha1.BodySendMode) field.ErrorList {
	var errs field.ErrorList
	for _, h := range []struct {
		name string
		v    v1alpha1.HeaderSendMode
	}{{"requestHeaderMode", reqH}, {"responseHeaderMode", respH}, {"requestTrailerMode", reqT}, {"responseTrailerMode", respT}} {
		if h.v != "" && !slices.Contains(headerModes, string(h.v)) {
			errs = append(errs, field.NotSupported(p.Child(h.name), string(h.v), headerModes))
		}
	}
	for _, b := range []struct {
		name, trailerName string
		v                 v1alpha1.BodySendMode
		trailer           v1alpha1.HeaderSendMode
	}{{"requestBodyMode", "requestTrailerMode", reqB, reqT}, {"responseBodyMode", "responseTrailerMode", respB, respT}} {
		if b.v != "" && !slices.Contains(bodyModeNames, string(b.v)) {
			errs = append(errs, field.NotSupported(p.Child(b.name), string(b.v), bodyModeNames))
		}
		if b.v == v1alpha1.BodyFullDuplexStreamed && b.trailer != v1alpha1.Send {
			given := string(b.trailer)
			if given == "" {
				given = "Skip (the default)"
			}
			errs = append(errs, field.Invalid(p.Child(b.trailerName), given,
				"must be Send when "+b.name+" is FullDuplexStreamed"))
		}
	}
	return errs
}

func regex(errs *field.ErrorList, p *field.Path, expr string) {
	if _, err := mutate.CompileFullMatch(expr); err != nil {
		*errs = append(*errs, field.Invalid(p, expr, "must be an RE2 regular expression: "+unwrapAll(err)))
	}
}

func headerMatchers(errs *field.ErrorList, p *field.Path, entries []string) {
	for i, e := range entries {
		if expr, ok := strings.CutPrefix(e, "re:"); ok {
			if expr == "" {
				*errs = append(*errs, field.Invalid(p.Index(i), e, `must have an RE2 regular expression after "re:"`))
			}
			regex(errs, p.Index(i), expr)
			continue
		}
		if !validHeaderName(e) {
			*errs = append(*errs, field.Invalid(p.Index(i), e, `must be a header name, or an RE2 regular expression prefixed with "re:"`))
		}
	}
}

func celMap(errs *field.ErrorList, p *field.Path, exprs map[string]string, response bool) {
	for _, k := range sortedKeys(exprs) {
		_, err := attrs.Compile(map[string]string{k: exprs[k]}, response)
		switch {
		case err == nil:
		case errors.Is(err, attrs.ErrResponseOnly):
			*errs = append(*errs, field.Invalid(p.Key(k), exprs[k], "must not use response.* attributes: they are only available in responseAttributes"))
		default:
			*errs = append(*errs, field.Invalid(p.Key(k), exprs[k], "must be a valid CEL expression over Envoy's attributes: "+unwrapAll(err)))
		}
	}
}

// unwrapAll gives the innermost error text: the outer layers only repeat the field path.
func unwrapAll(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// grpcKeyProblem applies gRPC's metadata key rules: lower-case letters, digits, '-', '_'
// and '.', not reserved (grpc-*), not a pseudo-header.
func grpcKeyProblem(k string) string {
	const want = "must be a gRPC metadata key: lower-case letters, digits, '-', '_' or '.'"
	if k == "" {
		return want
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return want
		}
	}
	if strings.HasPrefix(k, "grpc-") {
		return `must not start with "grpc-" (reserved by gRPC)`
	}
	return ""
}

func printableASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
