package mutate

import (
	"net/http"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// HeaderValue returns the value a processor meant: raw_value when set, else value. Envoy
// reads only raw_value; reading value too lets processors that fill only value work.
func HeaderValue(hv *corev3.HeaderValue) string {
	if raw := hv.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return hv.GetValue()
}

// builder fills one HeaderMap with few allocations: the HeaderValue messages share one
// slab and the raw values one byte buffer, so the cost does not grow with a per-header
// allocation count.
type builder struct {
	field v1alpha1.HeaderValueField
	slab  []corev3.HeaderValue
	raw   []byte
	out   []*corev3.HeaderValue
}

func newBuilder(field v1alpha1.HeaderValueField, entries, bytes int) *builder {
	b := &builder{field: field, slab: make([]corev3.HeaderValue, 0, entries), out: make([]*corev3.HeaderValue, 0, entries)}
	if field != v1alpha1.HeaderValueString {
		b.raw = make([]byte, 0, bytes)
	}
	return b
}

func (b *builder) add(key, value string) {
	// Capacity was reserved up front, so append never moves messages already handed out.
	b.slab = append(b.slab, corev3.HeaderValue{})
	hv := &b.slab[len(b.slab)-1]
	hv.Key = key
	switch b.field {
	case v1alpha1.HeaderValueString:
		hv.Value = value
	case v1alpha1.HeaderValueBoth:
		hv.Value = value
		hv.RawValue = b.bytes(value)
	default:
		hv.RawValue = b.bytes(value)
	}
	b.out = append(b.out, hv)
}

func (b *builder) bytes(v string) []byte {
	start := len(b.raw)
	b.raw = append(b.raw, v...)
	// The capacity is clipped so that a processor-side append cannot clobber the next value.
	return b.raw[start:len(b.raw):len(b.raw)]
}

func (b *builder) done() *corev3.HeaderMap { return &corev3.HeaderMap{Headers: b.out} }

// sizeOf counts the entries and value bytes of h, and returns its keys sorted so that
// what is sent does not depend on map iteration order.
func sizeOf(h http.Header) (keys []string, entries, bytes int) {
	keys = make([]string, 0, len(h))
	for k, vs := range h {
		keys = append(keys, k)
		entries += len(vs)
		for _, v := range vs {
			bytes += len(v)
		}
	}
	slices.Sort(keys)
	return keys, entries, bytes
}

// addRegular adds the regular headers of h in key order, lower-cased and filtered by fwd.
// skip names headers the caller sends itself (Host, Content-Length).
func (b *builder) addRegular(h http.Header, keys []string, fwd *ForwardRules, skip func(string) bool) {
	for _, k := range keys {
		if skip != nil && skip(k) {
			continue
		}
		l := lowerName(k)
		if !fwd.Allowed(l) {
			continue
		}
		for _, v := range h[k] {
			b.add(l, v)
		}
	}
}

func skipHostAndLength(k string) bool { return k == "Host" || k == "Content-Length" }

// RequestHeaders builds the request_headers map sent to a processor: :method, :scheme,
// :authority (req.Host, else req.URL.Host) and :path (path and query, as the request line
// has them) first, then the regular headers in key order, lower-cased, filtered by fwd (nil
// = all). Host is only sent as :authority. content-length is sent from req.ContentLength
// (the data plane ignores the header): when positive, or when zero and the client sent one.
// field chooses raw_value (the default, as Envoy), value, or both.
func RequestHeaders(req *http.Request, scheme string, fwd *ForwardRules, field v1alpha1.HeaderValueField) *corev3.HeaderMap {
	keys, entries, size := sizeOf(req.Header)
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	authority := req.Host
	if authority == "" && req.URL != nil {
		authority = req.URL.Host
	}
	path := "/"
	if req.URL != nil {
		path = req.URL.RequestURI()
	}
	b := newBuilder(field, entries+5, size+len(method)+len(scheme)+len(authority)+len(path)+20)
	b.add(":method", method)
	b.add(":scheme", scheme)
	b.add(":authority", authority)
	b.add(":path", path)
	if req.ContentLength > 0 || (req.ContentLength == 0 && len(req.Header["Content-Length"]) > 0) {
		if fwd.Allowed("content-length") {
			b.add("content-length", strconv.FormatInt(req.ContentLength, 10))
		}
	}
	b.addRegular(req.Header, keys, fwd, skipHostAndLength)
	return b.done()
}

// ResponseHeaders builds the response_headers map sent to a processor: :status first, then
// the regular headers in key order, lower-cased and filtered by fwd (nil = all).
// content-length comes from resp.ContentLength when it is known (>= 0), as the data plane
// writes it, and is left out when the length is unknown (-1).
func ResponseHeaders(resp *http.Response, fwd *ForwardRules, field v1alpha1.HeaderValueField) *corev3.HeaderMap {
	keys, entries, size := sizeOf(resp.Header)
	b := newBuilder(field, entries+2, size+24)
	b.add(":status", strconv.Itoa(resp.StatusCode))
	if resp.ContentLength >= 0 && fwd.Allowed("content-length") {
		b.add("content-length", strconv.FormatInt(resp.ContentLength, 10))
	}
	b.addRegular(resp.Header, keys, fwd, func(k string) bool { return k == "Content-Length" })
	return b.done()
}

// Trailers builds a request_trailers or response_trailers map: the trailers in key order,
// lower-cased and filtered by fwd (nil = all), as forward rules apply to trailers too.
func Trailers(h http.Header, fwd *ForwardRules, field v1alpha1.HeaderValueField) *corev3.HeaderMap {
	keys, entries, size := sizeOf(h)
	b := newBuilder(field, entries, size)
	b.addRegular(h, keys, fwd, nil)
	return b.done()
}
