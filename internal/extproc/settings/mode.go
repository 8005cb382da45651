package settings

import (
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// Mode is one whole processing mode: which headers and trailers are sent (true = Send) and
// how each body is sent. The zero value sends nothing; DefaultMode is Envoy's default.
type Mode struct {
	RequestHeader, ResponseHeader, RequestTrailer, ResponseTrailer bool // true = Send
	RequestBody, ResponseBody                                      extprocfilterv3.ProcessingMode_BodySendMode
}

// DefaultMode is the mode when nothing is configured: headers Send, bodies NONE, trailers
// Skip, as Envoy.
var DefaultMode = Mode{RequestHeader: true, ResponseHeader: true}

// Allowed reports whether a mode_override that yields override may take effect, given the
// allow-list allowed (empty = any). request_header_mode is not compared: a mode_override
// comes with or after the request headers, so Envoy ignores that field. The receiver (the
// current mode) takes no part today; it is there so that callers read naturally.
func (m Mode) Allowed(override Mode, allowed []Mode) bool {
	if len(allowed) == 0 {
		return true
	}
	override.RequestHeader = false
	for _, a := range allowed {
		a.RequestHeader = false
		if a == override {
			return true
		}
	}
	return false
}

// Override returns m changed by a processor's mode_override pm, as Envoy applies it: a
// header or trailer mode DEFAULT leaves that phase as it is, SEND and SKIP set it; the body
// modes are taken as given (their zero value is NONE); request_header_mode is ignored.
// A nil pm returns m.
func (m Mode) Override(pm *extprocfilterv3.ProcessingMode) Mode {
	if pm == nil {
		return m
	}
	send := func(cur bool, hm extprocfilterv3.ProcessingMode_HeaderSendMode) bool {
		switch hm {
		case extprocfilterv3.ProcessingMode_SEND:
			return true
		case extprocfilterv3.ProcessingMode_SKIP:
			return false
		}
		return cur
	}
	m.ResponseHeader = send(m.ResponseHeader, pm.GetResponseHeaderMode())
	m.RequestTrailer = send(m.RequestTrailer, pm.GetRequestTrailerMode())
	m.ResponseTrailer = send(m.ResponseTrailer, pm.GetResponseTrailerMode())
	m.RequestBody = pm.GetRequestBodyMode()
	m.ResponseBody = pm.GetResponseBodyMode()
	return m
}

// Proto returns m as Envoy's ProcessingMode, every header mode explicit (SEND or SKIP).
func (m Mode) Proto() *extprocfilterv3.ProcessingMode {
	hm := func(send bool) extprocfilterv3.ProcessingMode_HeaderSendMode {
		if send {
			return extprocfilterv3.ProcessingMode_SEND
		}
		return extprocfilterv3.ProcessingMode_SKIP
	}
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   hm(m.RequestHeader),
		ResponseHeaderMode:  hm(m.ResponseHeader),
		RequestTrailerMode:  hm(m.RequestTrailer),
		ResponseTrailerMode: hm(m.ResponseTrailer),
		RequestBodyMode:     m.RequestBody,
		ResponseBodyMode:    m.ResponseBody,
	}
}

// bodyModes maps the API's body modes to Envoy's.
var bodyModes = map[v1alpha1.BodySendMode]extprocfilterv3.ProcessingMode_BodySendMode{
	"":                              extprocfilterv3.ProcessingMode_NONE,
	v1alpha1.BodyNone:               extprocfilterv3.ProcessingMode_NONE,
	v1alpha1.BodyStreamed:           extprocfilterv3.ProcessingMode_STREAMED,
	v1alpha1.BodyBuffered:           extprocfilterv3.ProcessingMode_BUFFERED,
	v1alpha1.BodyBufferedPartial:    extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL,
	v1alpha1.BodyFullDuplexStreamed: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
}

// headerSend resolves a header or trailer mode, empty taking def.
func headerSend(hm v1alpha1.HeaderSendMode, def bool) bool {
	switch hm {
	case v1alpha1.Send:
		return true
	case v1alpha1.Skip:
		return false
	}
	return def
}

// modeOf resolves a validated API mode, fields left out taking the defaults.
func modeOf(reqH, respH, reqT, respT v1alpha1.HeaderSendMode, reqB, respB v1alpha1.BodySendMode) Mode {
	return Mode{
		RequestHeader:   headerSend(reqH, true),
		ResponseHeader:  headerSend(respH, true),
		RequestTrailer:  headerSend(reqT, false),
		ResponseTrailer: headerSend(respT, false),
		RequestBody:     bodyModes[reqB],
		ResponseBody:    bodyModes[respB],
	}
}
