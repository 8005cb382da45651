package translate

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// routeEntry is a route on a virtual host with what its precedence depends on beyond the
// match: its HTTPRoute's age and name, and its rule and match indexes.
type routeEntry struct {
	r          *ir.Route
	created    metav1.Time
	namespace  string
	name       string
	ruleIndex  int
	matchIndex int
	// grpc is set for a GRPCRoute's route, ranked as the GRPCRouteRule doc says.
	grpc *grpcRank
}

// pathRank orders path match types: Exact first, then RegularExpression, then PathPrefix.
// The spec leaves regular expressions' place to implementations; putting them before
// prefixes (as Envoy Gateway does) keeps a regex reachable when a "/" prefix route exists
// on the same host, which is almost always what was meant.
func pathRank(t ir.PathMatchType) int {
	switch t {
	case ir.PathExact:
		return 0
	case ir.PathRegex:
		return 1
	}
	return 2
}

// routeLess reports whether a takes precedence over b, per the HTTPRouteRule doc: exact
// path, then the longest path (characters), then a method match, then the most header
// matches, then the most query matches; across HTTPRoutes the oldest, then namespace/name
// alphabetically; within one, rule order, then match order.
func routeLess(a, b *routeEntry) bool {
	ma, mb := &a.r.Match, &b.r.Match
	if a.grpc != nil && b.grpc != nil {
		return grpcLess(a, b)
	}
	if ra, rb := pathRank(ma.PathType), pathRank(mb.PathType); ra != rb {
		return ra < rb
	}
	if len(ma.Path) != len(mb.Path) {
		return len(ma.Path) > len(mb.Path)
	}
	if (ma.Method != "") != (mb.Method != "") {
		return ma.Method != ""
	}
	if len(ma.Headers) != len(mb.Headers) {
		return len(ma.Headers) > len(mb.Headers)
	}
	if len(ma.Query) != len(mb.Query) {
		return len(ma.Query) > len(mb.Query)
	}
	return tieLess(a, b)
}

// grpcLess is routeLess for two GRPCRoute routes, per the GRPCRouteRule doc: the most
// characters in the service, then in the method, then the most header matches; then as
// for HTTPRoutes. (An HTTPRoute and a GRPCRoute never share a virtual host.)
func grpcLess(a, b *routeEntry) bool {
	if a.grpc.service != b.grpc.service {
		return a.grpc.service > b.grpc.service
	}
	if a.grpc.method != b.grpc.method {
		return a.grpc.method > b.grpc.method
	}
	if ha, hb := len(a.r.Match.Headers), len(b.r.Match.Headers); ha != hb {
		return ha > hb
	}
	return tieLess(a, b)
}

// tieLess breaks ties between routes of equal matches: the oldest route, then by
// namespace/name, then rule order, then match order.
func tieLess(a, b *routeEntry) bool {
	ma, mb := &a.r.Match, &b.r.Match
	if !a.created.Equal(&b.created) {
		return a.created.Before(&b.created)
	}
	if a.namespace != b.namespace {
		return a.namespace < b.namespace
	}
	if a.name != b.name {
		return a.name < b.name
	}
	if a.ruleIndex != b.ruleIndex {
		return a.ruleIndex < b.ruleIndex
	}
	if a.matchIndex != b.matchIndex {
		return a.matchIndex < b.matchIndex
	}
	// Same match of the same rule on the same host: only possible for duplicates, which
	// are equivalent. Compare paths to stay a strict weak order.
	return ma.Path < mb.Path
}
