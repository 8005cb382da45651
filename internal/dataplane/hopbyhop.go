package dataplane

import (
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 and their historical kin: they
// describe one connection and must not be forwarded.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopByHop deletes hop-by-hop headers, including those the Connection header names.
// keepTrailersTE keeps "Te: trailers" on requests, which gRPC and others need end to end.
func removeHopByHop(h http.Header, keepTrailersTE bool) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, connectionOption(sf))
			}
		}
	}
	te := keepTrailersTE && httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	for _, k := range hopHeaders {
		if _, ok := h[k]; ok {
			delete(h, k)
		}
	}
	if te {
		h["Te"] = []string{"trailers"}
	}
}

// connectionOption canonicalizes a field name listed in Connection; the usual options are
// matched without allocating.
func connectionOption(opt string) string {
	switch {
	case strings.EqualFold(opt, "keep-alive"):
		return "Keep-Alive"
	case strings.EqualFold(opt, "close"):
		return "Close"
	case strings.EqualFold(opt, "upgrade"):
		return "Upgrade"
	}
	return http.CanonicalHeaderKey(opt)
}

// upgradeType returns the protocol a request or 101 response asks to switch to, or "".
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}
