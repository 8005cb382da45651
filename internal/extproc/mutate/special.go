package mutate

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// setRouting sets a pseudo-header, or host on a request. They always exist, so only the
// overwrite actions change them (appending was refused before).
func (a *applier) setRouting(l, v string, act action) error {
	if act == addIfAbsent {
		return nil
	}
	if l == "host" && act == appendOrAdd {
		a.out.Rejected++ // a request has one host
		return nil
	}
	switch l {
	case ":path":
		if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, "# ") {
			return errorf("invalid :path %q: want an origin-form path starting with /", v)
		}
		u, err := url.ParseRequestURI(v)
		if err != nil {
			return errorf("invalid :path %q: %v", v, err)
		}
		a.req.URL.Path, a.req.URL.RawPath = u.Path, u.RawPath
		a.req.URL.RawQuery, a.req.URL.ForceQuery = u.RawQuery, u.ForceQuery
	case ":authority", "host":
		if !httpguts.ValidHostHeader(v) {
			return errorf("invalid %s %q", l, v)
		}
		a.req.Host = v
		delete(a.h, "Host")
	case ":method":
		if !httpguts.ValidHeaderFieldName(v) {
			return errorf("invalid :method %q", v)
		}
		a.req.Method = v
	case ":scheme":
		s := strings.ToLower(v)
		if s != "http" && s != "https" {
			a.out.Rejected++
			return nil
		}
		a.req.URL.Scheme = s
	case ":status":
		n, ok := parseDigits(v)
		if !ok || n < 200 || n > 599 {
			a.out.Rejected++ // Envoy ignores a :status that is not a final status
			return nil
		}
		a.resp.StatusCode = int(n)
		a.resp.Status = strconv.Itoa(int(n)) + " " + http.StatusText(int(n))
	}
	return nil
}

// setLength sets content-length on a request or response, keeping the ContentLength field
// (which the data plane uses) and the header in agreement.
func (a *applier) setLength(v string, act action) error {
	n, ok := parseDigits(v)
	if !ok {
		return errorf("content-length %q is not a non-negative integer", v)
	}
	var cur *int64
	var exists bool
	if a.to == toRequest {
		// A bodiless request has length 0 with no header; only a real length "exists".
		cur = &a.req.ContentLength
		exists = *cur > 0 || len(a.h["Content-Length"]) > 0
	} else {
		cur = &a.resp.ContentLength
		exists = *cur >= 0
	}
	switch act {
	case addIfAbsent:
		if exists {
			return nil
		}
	case overwriteIfExist:
		if !exists {
			return nil
		}
	case appendOrAdd:
		if exists && *cur != n {
			return errorf("appending content-length %d to %d would make the length ambiguous", n, *cur)
		}
	}
	*cur = n
	a.h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	return nil
}

// parseDigits parses a decimal of digits only: strconv would also take a sign.
func parseDigits(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// size is the header bytes after the mutation, as Envoy counts them (names and values).
func (a *applier) size() int {
	n := 0
	for k, vs := range a.h {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	switch a.to {
	case toRequest:
		n += len(":method") + len(a.req.Method) + len(":authority") + len(a.req.Host) +
			len(":path") + len(a.req.URL.Path) + len(a.req.URL.RawQuery)
	case toResponse:
		n += len(":status") + 3
	}
	return n
}
