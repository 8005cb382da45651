package translate

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
)

// hostnameRE is the Gateway API Hostname pattern: lower-case DNS labels, optionally after
// a leading "*." wildcard label.
var hostnameRE = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// validateHostname checks a listener or route hostname. IP addresses are not hostnames.
func validateHostname(h string, allowWildcard bool) error {
	switch {
	case h == "":
		return fmt.Errorf("hostname must not be empty")
	case len(h) > 253:
		return fmt.Errorf("hostname %q is longer than 253 characters", h)
	case net.ParseIP(h) != nil:
		return fmt.Errorf("hostname %q is an IP address, expected a DNS name", h)
	case !hostnameRE.MatchString(h):
		return fmt.Errorf("hostname %q is not a lower-case DNS name (optionally with a leading \"*.\" label)", h)
	case !allowWildcard && strings.HasPrefix(h, "*"):
		return fmt.Errorf("hostname %q must not be a wildcard", h)
	}
	return nil
}

// isWildcard reports whether h is a "*." wildcard hostname.
func isWildcard(h string) bool { return strings.HasPrefix(h, "*.") }

// wildcardCovers reports whether wildcard w ("*.example.com") matches h, exact or a
// narrower wildcard. "*.example.com" matches "a.example.com" and "a.b.example.com" (any
// number of labels, as the spec says) but not "example.com".
func wildcardCovers(w, h string) bool {
	suffix := w[1:] // ".example.com"
	return strings.HasSuffix(h, suffix) && len(h) > len(suffix)
}

// intersectHostname returns the hostnames served when a listener with hostname listener
// ("" for any) carries a route with hostname route: the more specific of the two when one
// covers the other.
func intersectHostname(listener, route string) (string, bool) {
	switch {
	case listener == "":
		return route, true
	case listener == route:
		return route, true
	case isWildcard(listener) && wildcardCovers(listener, route):
		return route, true
	case isWildcard(route) && wildcardCovers(route, listener):
		return listener, true
	}
	return "", false
}

// effectiveHostnames returns, most specific first, the hostnames a route serves on a
// listener: the listener's hostname when the route names none, else the intersections.
// An empty result means the route does not attach to the listener.
func effectiveHostnames(listener string, routeHosts []string) []string {
	if len(routeHosts) == 0 {
		return []string{listener}
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range routeHosts {
		if h, ok := intersectHostname(listener, r); ok && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	sortHostnames(out)
	return out
}

// sortHostnames orders hostnames most specific first: exact names (alphabetically), then
// wildcards, longer first, then "" (any host).
func sortHostnames(hs []string) {
	sort.Slice(hs, func(i, j int) bool { return hostLess(hs[i], hs[j]) })
}

func hostLess(a, b string) bool {
	ra, rb := hostRank(a), hostRank(b)
	if ra != rb {
		return ra < rb
	}
	if ra == 1 && len(a) != len(b) {
		return len(a) > len(b)
	}
	return a < b
}

// hostRank is 0 for exact names, 1 for wildcards and 2 for "".
func hostRank(h string) int {
	switch {
	case h == "":
		return 2
	case isWildcard(h):
		return 1
	}
	return 0
}
