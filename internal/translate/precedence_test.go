package translate

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// entry builds a routeEntry for precedence tests.
func entry(pathType ir.PathMatchType, path string, mod func(*routeEntry)) *routeEntry {
	e := &routeEntry{
		r:         &ir.Route{Match: ir.Match{PathType: pathType, Path: path}},
		created:   metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)),
		namespace: "default",
		name:      "route",
	}
	if mod != nil {
		mod(e)
	}
	return e
}

func TestRouteLess(t *testing.T) {
	h := func(n int) func(*routeEntry) {
		return func(e *routeEntry) {
			for i := 0; i < n; i++ {
				e.r.Match.Headers = append(e.r.Match.Headers, ir.StringMatch{Name: "H", Value: "v"})
			}
		}
	}
	q := func(n int) func(*routeEntry) {
		return func(e *routeEntry) {
			for i := 0; i < n; i++ {
				e.r.Match.Query = append(e.r.Match.Query, ir.StringMatch{Name: "q", Value: "v"})
			}
		}
	}
	method := func(e *routeEntry) { e.r.Match.Method = "GET" }
	older := func(e *routeEntry) { e.created = metav1.NewTime(e.created.Add(-time.Hour)) }
	tests := []struct {
		name        string
		first, then *routeEntry
	}{
		{"exact over prefix", entry(ir.PathExact, "/a", nil), entry(ir.PathPrefix, "/a/b/c", nil)},
		{"exact over regex", entry(ir.PathExact, "/a", nil), entry(ir.PathRegex, "/a.*", nil)},
		{"regex over prefix", entry(ir.PathRegex, "/a.*", nil), entry(ir.PathPrefix, "/a/b/c", nil)},
		{"longer prefix", entry(ir.PathPrefix, "/abc", nil), entry(ir.PathPrefix, "/ab", nil)},
		{"longer prefix over method", entry(ir.PathPrefix, "/abc", nil), entry(ir.PathPrefix, "/ab", method)},
		{"method", entry(ir.PathPrefix, "/", method), entry(ir.PathPrefix, "/", h(3))},
		{"headers", entry(ir.PathPrefix, "/", h(2)), entry(ir.PathPrefix, "/", h(1))},
		{"headers over query", entry(ir.PathPrefix, "/", h(1)), entry(ir.PathPrefix, "/", q(5))},
		{"query", entry(ir.PathPrefix, "/", q(2)), entry(ir.PathPrefix, "/", q(1))},
		{"oldest", entry(ir.PathPrefix, "/", older), entry(ir.PathPrefix, "/", nil)},
		{"older beats name", entry(ir.PathPrefix, "/", func(e *routeEntry) { older(e); e.name = "zz" }), entry(ir.PathPrefix, "/", nil)},
		{"namespace", entry(ir.PathPrefix, "/", func(e *routeEntry) { e.namespace = "a"; e.name = "zz" }), entry(ir.PathPrefix, "/", nil)},
		{"name", entry(ir.PathPrefix, "/", func(e *routeEntry) { e.name = "a" }), entry(ir.PathPrefix, "/", nil)},
		{"rule order", entry(ir.PathPrefix, "/", nil), entry(ir.PathPrefix, "/", func(e *routeEntry) { e.ruleIndex = 1 })},
		{"match order", entry(ir.PathPrefix, "/", nil), entry(ir.PathPrefix, "/", func(e *routeEntry) { e.matchIndex = 1 })},
	}
	for _, tc := range tests {
		if !routeLess(tc.first, tc.then) {
			t.Errorf("%s: first does not take precedence", tc.name)
		}
		if routeLess(tc.then, tc.first) {
			t.Errorf("%s: order is not antisymmetric", tc.name)
		}
	}
}
