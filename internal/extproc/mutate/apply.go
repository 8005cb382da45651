package mutate

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Limits on one HeaderMutation and on its result, as Envoy's default header limits
// (100 headers, 60 KiB): past them the mutation fails the request instead of growing it.
const (
	// MaxMutations is the most set_headers plus remove_headers entries in one message.
	MaxMutations = 100
	// MaxHeaderBytes is the most header bytes (names and values, pseudo-headers included)
	// a mutation may leave.
	MaxHeaderBytes = 60 << 10
)

// Outcome reports what applying one HeaderMutation did.
type Outcome struct {
	// Rejected counts the changes dropped (by the mutation rules, or because they may never
	// happen), for the rejected-mutations metric.
	Rejected int
}

// Error is a mutation that must fail the request with status_on_error (invalid characters,
// value and raw_value both set, limits exceeded, a bad content-length or :path, or a
// disallowed change under disallowIsError).
type Error struct {
	// Reason says what was wrong, for logs and the local reply's details.
	Reason string
}

func (e *Error) Error() string { return "ext_proc header mutation: " + e.Reason }

func errorf(format string, args ...any) *Error { return &Error{Reason: fmt.Sprintf(format, args...)} }

type target int

const (
	toRequest target = iota
	toResponse
	toTrailers
	toLocal
)

// action is the effective append action of one set_headers entry.
type action = corev3.HeaderValueOption_HeaderAppendAction

const (
	appendOrAdd      = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	addIfAbsent      = corev3.HeaderValueOption_ADD_IF_ABSENT
	overwriteOrAdd   = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	overwriteIfExist = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS
)

// actionOf resolves append_action and the legacy append flag. The enum's zero value is
// APPEND_IF_EXISTS_OR_ADD and cannot be told from "unset", so zero defers to append, and
// with neither the action is overwrite, as Envoy's ext_proc does.
func actionOf(o *corev3.HeaderValueOption) action {
	if a := o.GetAppendAction(); a != appendOrAdd {
		return a
	}
	if ap := o.GetAppend(); ap != nil && ap.GetValue() {
		return appendOrAdd
	}
	return overwriteOrAdd
}

type applier struct {
	to          target
	h           http.Header
	req         *http.Request
	resp        *http.Response
	rules       *Rules
	allowMethod bool
	out         Outcome

	// Set-Cookie lines cannot be folded, so each set-cookie entry of one message is its own
	// cookie: an overwrite replaces only the cookies that were there before the message.
	cookieBase    int
	cookieCleared bool
}

// ApplyRequest applies m to req under rules. remove_headers run first, then set_headers in
// order. :path sets req.URL's path and query (RawPath kept valid); :authority and host set
// req.Host; :scheme sets req.URL.Scheme (http or https); :method sets req.Method; all but
// :path only with allowAllRouting, except :method also when allowMethod (the answer was
// CONTINUE_AND_REPLACE). content-length sets req.ContentLength and the header together;
// removing it makes the length unknown (-1) when there is a body. The returned error is an
// *Error; req may be partly changed then, and must not be sent.
func ApplyRequest(req *http.Request, m *extprocv3.HeaderMutation, rules *Rules, allowMethod bool) (Outcome, error) {
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	if req.URL == nil {
		req.URL = &url.URL{Path: "/"}
	}
	a := &applier{to: toRequest, h: req.Header, req: req, rules: rules, allowMethod: allowMethod}
	return a.run(m)
}

// ApplyResponse applies m to resp under rules. :status must be an integer in 200..599,
// otherwise it is ignored and counted. content-length sets resp.ContentLength and the
// header together; removing it makes the length unknown (-1).
func ApplyResponse(resp *http.Response, m *extprocv3.HeaderMutation, rules *Rules) (Outcome, error) {
	if resp.Header == nil {
		resp.Header = make(http.Header)
	}
	a := &applier{to: toResponse, h: resp.Header, resp: resp, rules: rules}
	return a.run(m)
}

// ApplyTrailers applies m to the trailers h under rules. Pseudo-headers and content-length
// have no meaning in trailers and are ignored (counted).
func ApplyTrailers(h http.Header, m *extprocv3.HeaderMutation, rules *Rules) (Outcome, error) {
	a := &applier{to: toTrailers, h: h, rules: rules}
	return a.run(m)
}

// ApplyLocal applies m to the headers of an immediate response under rules. Its status
// comes from ImmediateResponse.status and its length from the body, so pseudo-headers and
// content-length are ignored (counted).
func ApplyLocal(h http.Header, m *extprocv3.HeaderMutation, rules *Rules) (Outcome, error) {
	a := &applier{to: toLocal, h: h, rules: rules}
	return a.run(m)
}

func (a *applier) run(m *extprocv3.HeaderMutation) (Outcome, error) {
	if m == nil {
		return a.out, nil
	}
	if n := len(m.GetSetHeaders()) + len(m.GetRemoveHeaders()); n > MaxMutations {
		return a.out, errorf("%d header changes in one message, more than the limit of %d", n, MaxMutations)
	}
	if a.h == nil && (len(m.GetSetHeaders()) > 0 || len(m.GetRemoveHeaders()) > 0) {
		return a.out, errorf("no header map to change")
	}
	for _, name := range m.GetRemoveHeaders() {
		if err := a.remove(name); err != nil {
			return a.out, err
		}
	}
	a.cookieBase = len(a.h["Set-Cookie"])
	for _, o := range m.GetSetHeaders() {
		if err := a.set(o); err != nil {
			return a.out, err
		}
	}
	if size := a.size(); size > MaxHeaderBytes {
		return a.out, errorf("headers are %d bytes after the mutation, more than the limit of %d", size, MaxHeaderBytes)
	}
	return a.out, nil
}

// refuse handles a change the configured rules disallow.
func (a *applier) refuse(name string) error {
	if a.rules.isError() {
		return errorf("change of header %q disallowed by mutationRules", name)
	}
	a.out.Rejected++
	return nil
}

func (a *applier) remove(name string) error {
	l := strings.ToLower(name)
	if !validName(l) {
		return errorf("invalid header name %q in remove_headers", name)
	}
	if strings.HasPrefix(l, ":") || l == "host" {
		a.out.Rejected++ // pseudo-headers and host can never be removed
		return nil
	}
	if a.rules.check(l, false) == rejected {
		return a.refuse(l)
	}
	a.del(l)
	return nil
}

// del removes the regular header l, keeping the content length consistent.
func (a *applier) del(l string) {
	if l == "content-length" {
		switch a.to {
		case toRequest:
			a.req.ContentLength = -1
			if a.req.Body == nil || a.req.Body == http.NoBody {
				a.req.ContentLength = 0
			}
		case toResponse:
			a.resp.ContentLength = -1
		}
	}
	if l == "set-cookie" {
		// The cookies that were there before the message are gone.
		a.cookieBase = 0
	}
	delete(a.h, canonName(l))
}

func (a *applier) set(o *corev3.HeaderValueOption) error {
	hv := o.GetHeader()
	if hv == nil {
		return nil
	}
	if len(hv.GetRawValue()) > 0 && hv.GetValue() != "" {
		return errorf("header %q has both value and raw_value", hv.GetKey())
	}
	l := strings.ToLower(hv.GetKey())
	if !validName(l) {
		return errorf("invalid header name %q in set_headers", hv.GetKey())
	}
	if raw := hv.GetRawValue(); len(raw) > 0 && !validValueBytes(raw) || !validValue(hv.GetValue()) {
		return errorf("invalid character in the value of header %q", l)
	}
	act := actionOf(o)
	pseudo := strings.HasPrefix(l, ":")
	if neverSet(l) || (l == "content-length" && (a.to == toTrailers || a.to == toLocal)) {
		a.out.Rejected++
		return nil
	}
	if pseudo && (act == appendOrAdd || !a.knownPseudo(l)) {
		a.out.Rejected++
		return nil
	}
	if a.rules.check(l, a.allowMethod) == rejected {
		return a.refuse(l)
	}
	v := HeaderValue(hv)
	routing := pseudo || (l == "host" && a.to == toRequest)
	if v == "" && !o.GetKeepEmptyValue() {
		// Without keep_empty_value an empty value is no value: an overwrite removes the
		// header, an append adds nothing.
		if !routing && (act == overwriteOrAdd || act == overwriteIfExist) {
			a.del(l)
		}
		return nil
	}
	switch {
	case routing:
		return a.setRouting(l, v, act)
	case l == "content-length":
		return a.setLength(v, act)
	}
	a.setRegular(canonName(l), v, act)
	return nil
}

func (a *applier) knownPseudo(l string) bool {
	switch a.to {
	case toRequest:
		return l == ":path" || l == ":authority" || l == ":method" || l == ":scheme"
	case toResponse:
		return l == ":status"
	}
	return false
}

func (a *applier) setRegular(k, v string, act action) {
	exists := len(a.h[k]) > 0
	switch act {
	case appendOrAdd:
		a.h[k] = append(a.h[k], v)
	case addIfAbsent:
		if !exists {
			a.h[k] = []string{v}
		}
	case overwriteIfExist:
		if exists {
			a.overwrite(k, v)
		}
	default:
		a.overwrite(k, v)
	}
}

func (a *applier) overwrite(k, v string) {
	if k != "Set-Cookie" {
		a.h[k] = []string{v}
		return
	}
	if !a.cookieCleared {
		a.h[k] = append([]string(nil), a.h[k][a.cookieBase:]...)
		a.cookieCleared = true
	}
	a.h[k] = append(a.h[k], v)
}
