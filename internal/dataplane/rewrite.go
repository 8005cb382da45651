package dataplane

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// rewritePath applies a ReplaceFullPath or ReplacePrefixMatch to path. matched is the
// route's PathPrefix (without trailing slash) for ReplacePrefixMatch.
func rewritePath(path string, rw *ir.Rewrite, matched string) string {
	switch rw.PathType {
	case ir.ReplaceFullPath:
		return rw.Path
	case ir.ReplacePrefixMatch:
		if !prefixMatches(matched, path) {
			// A filter changed the path after matching: the prefix is no longer there
			// to replace.
			return path
		}
		rest := path
		if matched != "/" {
			rest = path[len(matched):]
		}
		repl := rw.Path
		if strings.HasSuffix(repl, "/") && strings.HasPrefix(rest, "/") {
			rest = rest[1:]
		}
		if repl == "" && rest == "" {
			return "/"
		}
		if !strings.HasSuffix(repl, "/") && rest != "" && !strings.HasPrefix(rest, "/") {
			repl += "/"
		}
		out := repl + rest
		if out == "" {
			out = "/"
		}
		return out
	}
	return path
}

// applyRewrite applies a URLRewrite filter to the outgoing request.
func applyRewrite(out *http.Request, rt *route, rw *ir.Rewrite) {
	if rw.Hostname != "" {
		out.Host = rw.Hostname
	}
	if rw.PathType != "" {
		out.URL.Path = rewritePath(out.URL.Path, rw, rt.path)
		out.URL.RawPath = ""
	}
}

// redirectReply builds the RequestRedirect answer for the request.
func redirectReply(ex *exchange, rt *route) *filter.LocalReply {
	rd := rt.ir.Redirect
	in := ex.Request
	scheme := ex.Scheme
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host, portStr, err := net.SplitHostPort(in.Host)
	if err != nil {
		host, portStr = in.Host, ""
	}
	if rd.Hostname != "" {
		host = rd.Hostname
	}
	// The Gateway API derives the port: the redirect's own, else the scheme's well-known
	// port when the scheme changes, else the listener's port; well-known ports are omitted.
	port := int(rd.Port)
	if port == 0 {
		switch {
		case rd.Scheme == "http":
			port = 80
		case rd.Scheme == "https":
			port = 443
		case ex.LocalAddr.IsValid():
			port = int(ex.LocalAddr.Port())
		default:
			port, _ = strconv.Atoi(portStr)
		}
	}
	authority := host
	if port != 0 && !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) {
		authority = net.JoinHostPort(host, strconv.Itoa(port))
	}
	path := in.URL.EscapedPath()
	if rd.Path != nil {
		path = rewritePath(in.URL.Path, rd.Path, rt.path)
	}
	loc := scheme + "://" + authority + path
	if in.URL.RawQuery != "" {
		loc += "?" + in.URL.RawQuery
	}
	h := make(http.Header, 1)
	h.Set("Location", loc)
	status := rd.StatusCode
	if status == 0 {
		status = http.StatusFound
	}
	return &filter.LocalReply{Status: status, Header: h, Details: "redirect"}
}
