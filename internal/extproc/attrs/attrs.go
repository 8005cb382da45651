// Package attrs evaluates the CEL expressions of an ext_proc policy's requestAttributes,
// responseAttributes and metadataContext over Envoy's attribute vocabulary (request.path,
// request.headers, source.address, connection.mtls, response.code, xds.route_name, ...).
// Expressions are compiled once, when the configuration is; Eval only evaluates.
package attrs

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"google.golang.org/protobuf/types/known/structpb"
)

// The top-level attribute groups. Each is a map from attribute name to value, so that an
// attribute that is unavailable is simply absent (and its expression fails, which omits it).
var (
	requestVars  = []string{"request", "source", "destination", "connection", "xds"}
	responseVars = []string{"response"}
)

// envs holds the two CEL environments, built once: the request one does not declare
// response, so that response.* fails to compile where no response exists yet.
var envs = sync.OnceValues(func() ([2]*cel.Env, error) {
	var out [2]*cel.Env
	for i, names := range [][]string{requestVars, append(slices.Clone(requestVars), responseVars...)} {
		opts := make([]cel.EnvOption, 0, len(names))
		for _, n := range names {
			opts = append(opts, cel.Variable(n, cel.MapType(cel.StringType, cel.DynType)))
		}
		env, err := cel.NewEnv(opts...)
		if err != nil {
			return out, fmt.Errorf("building the CEL environment: %w", err)
		}
		out[i] = env
	}
	return out, nil
})

// Program is a compiled set of attribute expressions, keyed by the names their values are
// sent under. It is immutable and safe for concurrent use.
type Program struct {
	keys  []string // sorted, so that evaluation order is stable
	progs []cel.Program
}

// ErrResponseOnly marks a compile error caused by response.* in a request-side expression.
var ErrResponseOnly = errors.New("response.* attributes are only available in responseAttributes")

// Compile compiles exprs (key -> CEL expression). With response false, expressions may not
// use response.* (the response does not exist yet): such an error wraps ErrResponseOnly.
// The error names the first failing key (in key order) and the CEL problem. A nil or empty
// map gives a nil Program, which evaluates to nil.
func Compile(exprs map[string]string, response bool) (*Program, error) {
	if len(exprs) == 0 {
		return nil, nil
	}
	e, err := envs()
	if err != nil {
		return nil, err
	}
	env := e[0]
	if response {
		env = e[1]
	}
	p := &Program{keys: make([]string, 0, len(exprs))}
	for k := range exprs {
		p.keys = append(p.keys, k)
	}
	slices.Sort(p.keys)
	for _, k := range p.keys {
		prg, err := compileOne(env, exprs[k])
		if err != nil {
			if !response {
				if _, rerr := compileOne(e[1], exprs[k]); rerr == nil {
					err = ErrResponseOnly
				}
			}
			return nil, fmt.Errorf("attribute %q: %w", k, err)
		}
		p.progs = append(p.progs, prg)
	}
	return p, nil
}

func compileOne(env *cel.Env, expr string) (cel.Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty CEL expression")
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("invalid CEL expression %q: %w", expr, iss.Err())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("CEL expression %q: %w", expr, err)
	}
	return prg, nil
}

var valueType = reflect.TypeFor[*structpb.Value]()

// Eval evaluates every expression against in and returns the values by key. Expressions
// that fail (an unavailable attribute, a type error) or whose value has no JSON form are
// omitted. A nil receiver returns nil; an empty result is an empty Struct.
func (p *Program) Eval(in *Input) *structpb.Struct {
	if p == nil {
		return nil
	}
	act := newActivation(in)
	out := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(p.keys))}
	for i, prg := range p.progs {
		v, _, err := prg.Eval(act)
		if err != nil || v == nil {
			continue
		}
		nv, err := v.ConvertToNative(valueType)
		if err != nil {
			continue
		}
		if sv, ok := nv.(*structpb.Value); ok {
			out.Fields[p.keys[i]] = sv
		}
	}
	return out
}
