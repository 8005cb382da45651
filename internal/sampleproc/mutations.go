package sampleproc

import (
	"maps"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// headersAnswer turns the instructions (which may be nil) and the headers the operator
// asked to add on every request into the CommonResponse of a headers answer. The result
// is never nil: an empty CommonResponse is how a processor says "no change", whereas a
// missing one would be a different (if equivalent) message on the wire.
//
// Mutations are passed through without validation on purpose: the sample is also a test
// peer for the gateway, and a bad header name in the instructions should reach the
// gateway's mutation rules rather than being silently fixed here.
func headersAnswer(in *instructions, extra [][2]string) *extprocv3.CommonResponse {
	var set []*corev3.HeaderValueOption
	// The operator's headers go first so that instructions, which are more specific to
	// this exchange, win when both name the same header.
	for _, h := range extra {
		set = append(set, overwrite(h[0], h[1]))
	}
	if in == nil {
		return commonWith(set, nil, nil, nil)
	}
	// Sorted so the answer is the same for the same instructions; JSON object order is
	// lost when decoding into a map.
	for _, name := range slices.Sorted(maps.Keys(in.AddHeaders)) {
		set = append(set, overwrite(name, in.AddHeaders[name]))
	}
	var body *extprocv3.BodyMutation
	if in.SetBody != nil {
		body = &extprocv3.BodyMutation{
			Mutation: &extprocv3.BodyMutation_Body{Body: []byte(*in.SetBody)},
		}
		// The gateway keeps Content-Length when headers are sent before a buffered
		// body, so a replaced body must come with a length that matches it.
		set = append(set,
			overwrite("content-type", "text/plain"),
			overwrite("content-length", strconv.Itoa(len(*in.SetBody))),
		)
	}
	var trailers *corev3.HeaderMap
	if len(in.SetTrailers) > 0 {
		trailers = &corev3.HeaderMap{}
		for _, name := range slices.Sorted(maps.Keys(in.SetTrailers)) {
			trailers.Headers = append(trailers.Headers, &corev3.HeaderValue{
				Key:      name,
				RawValue: []byte(in.SetTrailers[name]),
			})
		}
	}
	return commonWith(set, in.RemoveHeaders, body, trailers)
}

// commonWith assembles a CommonResponse, leaving header_mutation unset when there is
// nothing to mutate so that an empty answer really is empty.
func commonWith(set []*corev3.HeaderValueOption, remove []string, body *extprocv3.BodyMutation, trailers *corev3.HeaderMap) *extprocv3.CommonResponse {
	cr := &extprocv3.CommonResponse{BodyMutation: body, Trailers: trailers}
	if len(set) > 0 || len(remove) > 0 {
		cr.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: set, RemoveHeaders: remove}
	}
	return cr
}

// overwrite builds a set_headers entry that replaces any existing value. The value goes
// in raw_value because Envoy ignores value; append_action is explicit because gateways
// disagree on the default when only the deprecated append flag is considered.
func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
