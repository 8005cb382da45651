package dataplane

import (
	"net/url"
	"strings"
)

// normalizePath removes dot segments ("." and "..", percent-encoded or not) from the
// request's path, as RFC 3986 §5.2.4 and §6.2.2 describe, before the route is matched and
// the request forwarded: a PathPrefix "/public" must not admit "/public/../admin", and the
// upstream must get the path that was matched. Like Envoy Gateway's default, nothing else
// changes: encoded slashes (%2F) stay encoded and part of their segment, repeated slashes
// stay, and case is kept. Paths without dot segments, the common case, are untouched and
// cost no allocation.
func normalizePath(u *url.URL) {
	ep := u.EscapedPath()
	if !strings.HasPrefix(ep, "/") || !mayHaveDotSegment(ep) {
		return
	}
	cleaned, changed := removeDotSegments(ep)
	if !changed {
		return
	}
	p, err := url.PathUnescape(cleaned)
	if err != nil {
		// net/http accepted the request line, so this cannot happen; keep the path as sent
		// rather than guess.
		return
	}
	u.Path, u.RawPath = p, cleaned
}

func mayHaveDotSegment(ep string) bool {
	return strings.Contains(ep, "/.") || strings.Contains(ep, "/%2e") || strings.Contains(ep, "/%2E")
}

// dotSegment reports whether seg is "." (1) or ".." (2), percent-encoded dots included.
func dotSegment(seg string) int {
	dots := 0
	for i := 0; i < len(seg); {
		switch {
		case seg[i] == '.':
			i++
		case i+2 < len(seg) && seg[i] == '%' && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 3
		default:
			return 0
		}
		dots++
		if dots > 2 {
			return 0
		}
	}
	return dots
}

// removeDotSegments applies RFC 3986 §5.2.4 to an escaped absolute path.
func removeDotSegments(ep string) (string, bool) {
	segs := strings.Split(ep[1:], "/")
	out := make([]string, 0, len(segs))
	changed := false
	for i, seg := range segs {
		last := i == len(segs)-1
		switch dotSegment(seg) {
		case 1:
			changed = true
			if last {
				out = append(out, "")
			}
		case 2:
			changed = true
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/"), changed
}
