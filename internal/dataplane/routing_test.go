package dataplane

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// tagged returns a route that adds "X-Route: name" to the request, so the echo backend
// reports which route served it.
func tagged(name string, m ir.Match, b *ir.Backend) *ir.Route {
	return &ir.Route{
		Name:           name,
		Match:          m,
		RequestHeaders: &ir.HeaderModifier{Set: []ir.Header{{Name: "x-route", Value: name}}},
		Backends:       []ir.WeightedBackend{{Weight: 1, Backend: b}},
	}
}

func prefix(p string) ir.Match { return ir.Match{PathType: ir.PathPrefix, Path: p} }

// routedBy sends the request and returns the route that served it, or "404".
func routedBy(t *testing.T, c *http.Client, req *http.Request) string {
	t.Helper()
	resp, body := do(t, c, req)
	switch resp.StatusCode {
	case http.StatusOK:
		return decodeSeen(t, body).Header.Get("X-Route")
	case http.StatusNotFound:
		if len(body) > 100 || !strings.Contains(body, "no ") {
			t.Errorf("404 body %q: want a short explanation", body)
		}
		return "404"
	default:
		t.Fatalf("status %d: %s", resp.StatusCode, body)
		return ""
	}
}

func TestRoutingHosts(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	cfg := &ir.Config{Ports: []*ir.Port{
		// One listener, virtual hosts of every kind.
		httpPort(listener("hosts", "",
			vhostOf("foo.example.com", tagged("exact", prefix("/api"), b)),
			vhostOf("*.bar.example.com", tagged("long-wild", prefix("/"), b)),
			vhostOf("*.example.com", tagged("wild", prefix("/"), b)),
			vhostOf("", tagged("any", prefix("/"), b)),
		)),
		// Listeners sharing a port, each with its own hostname.
		httpPort(
			listener("a", "a.example.com", vhostOf("a.example.com", tagged("listener-a", prefix("/"), b))),
			listener("wild", "*.example.com", vhostOf("*.example.com", tagged("listener-wild", prefix("/"), b))),
			listener("any", "", vhostOf("", tagged("listener-any", prefix("/"), b))),
		),
		// A listener restricted to one hostname and nothing else on the port.
		httpPort(listener("only", "only.example.com", vhostOf("only.example.com", tagged("only", prefix("/"), b)))),
	}}
	startGateway(t, Options{}, cfg)
	c := newClient(t)
	base := func(i int) string {
		return "http://127.0.0.1:" + itoa(cfg.Ports[i].Number)
	}
	tests := []struct {
		port       int
		host, path string
		want       string
	}{
		{0, "foo.example.com", "/api/x", "exact"},
		{0, "FOO.Example.COM:8080", "/api", "exact"},
		{0, "foo.example.com.", "/api", "exact"},
		// The most specific virtual host is chosen, and its routes only: no fallback.
		{0, "foo.example.com", "/other", "404"},
		{0, "x.example.com", "/", "wild"},
		{0, "a.b.example.com", "/", "wild"},
		{0, "x.bar.example.com", "/", "long-wild"},
		{0, "bar.example.com", "/", "wild"},
		// A wildcard never matches its bare suffix.
		{0, "example.com", "/", "any"},
		{0, "other.org", "/", "any"},
		{1, "a.example.com", "/", "listener-a"},
		{1, "b.example.com", "/", "listener-wild"},
		{1, "example.com", "/", "listener-any"},
		{1, "other.org", "/", "listener-any"},
		{2, "only.example.com", "/", "only"},
		{2, "other.example.com", "/", "404"},
	}
	for _, tc := range tests {
		t.Run(itoa(int32(tc.port))+"/"+tc.host+tc.path, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodGet, base(tc.port)+tc.path, nil)
			req.Host = tc.host
			if got := routedBy(t, c, req); got != tc.want {
				t.Errorf("routed by %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRoutingMatches(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	hm := func(typ ir.StringMatchType, name, value string) []ir.StringMatch {
		return []ir.StringMatch{{Type: typ, Name: name, Value: value}}
	}
	routes := []*ir.Route{
		tagged("exact", ir.Match{PathType: ir.PathExact, Path: "/exact"}, b),
		tagged("post", ir.Match{PathType: ir.PathPrefix, Path: "/method", Method: http.MethodPost}, b),
		tagged("any-method", prefix("/method"), b),
		tagged("hdr-exact", ir.Match{PathType: ir.PathPrefix, Path: "/hdr", Headers: hm(ir.MatchExact, "x-env", "prod")}, b),
		tagged("hdr-re", ir.Match{PathType: ir.PathPrefix, Path: "/hdr", Headers: hm(ir.MatchRegex, "X-Env", "stag(e|ing)")}, b),
		tagged("q-exact", ir.Match{PathType: ir.PathPrefix, Path: "/q", Query: hm(ir.MatchExact, "v", "1")}, b),
		tagged("q-re", ir.Match{PathType: ir.PathPrefix, Path: "/q", Query: hm(ir.MatchRegex, "v", "[0-9]+")}, b),
		tagged("regex", ir.Match{PathType: ir.PathRegex, Path: "/re/[a-z]+/[0-9]+"}, b),
		// List order wins, even over a more specific route listed later.
		tagged("first", prefix("/order"), b),
		tagged("second", prefix("/order/deeper"), b),
		tagged("foo", prefix("/foo"), b),
		tagged("bar-slash", prefix("/bar/"), b),
	}
	g := startGateway(t, Options{}, simpleConfig(routes...))
	c := newClient(t)
	tests := []struct {
		method, path string
		header       string // "X-Env: value"
		want         string
	}{
		{"GET", "/exact", "", "exact"},
		{"GET", "/exact/", "", "404"},
		{"GET", "/exactly", "", "404"},
		{"POST", "/method", "", "post"},
		{"GET", "/method/x", "", "any-method"},
		{"GET", "/hdr", "prod", "hdr-exact"},
		{"GET", "/hdr", "staging", "hdr-re"},
		{"GET", "/hdr", "production", "404"}, // a regex matches the whole value
		{"GET", "/hdr", "", "404"},
		{"GET", "/q?v=1", "", "q-exact"},
		{"GET", "/q?x=2&v=1", "", "q-exact"},
		{"GET", "/q?v=42", "", "q-re"},
		{"GET", "/q?v=abc", "", "404"},
		{"GET", "/q", "", "404"},
		{"GET", "/re/abc/12", "", "regex"},
		{"GET", "/re/abc/12x", "", "404"},
		{"GET", "/re/ABC/1", "", "404"},
		{"GET", "/order/deeper/x", "", "first"},
		{"GET", "/foo", "", "foo"},
		{"GET", "/foo/", "", "foo"},
		{"GET", "/foo/bar", "", "foo"},
		{"GET", "/foobar", "", "404"},
		{"GET", "/bar", "", "bar-slash"},
		{"GET", "/bar/x", "", "bar-slash"},
		{"GET", "/barx", "", "404"},
		{"GET", "/nothing", "", "404"},
	}
	for _, tc := range tests {
		t.Run(tc.method+tc.path+"/"+tc.header, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(tc.method, g.URL+tc.path, nil)
			if tc.header != "" {
				req.Header.Set("X-Env", tc.header)
			}
			if got := routedBy(t, c, req); got != tc.want {
				t.Errorf("routed by %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPrefixMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, path string
		want         bool
	}{
		{"/", "/", true},
		{"/", "/anything", true},
		{"/foo", "/foo", true},
		{"/foo", "/foo/", true},
		{"/foo", "/foo/bar", true},
		{"/foo", "/foobar", false},
		{"/foo", "/fo", false},
		{"/foo/bar", "/foo", false},
	}
	for _, tc := range tests {
		if got := prefixMatches(tc.prefix, tc.path); got != tc.want {
			t.Errorf("prefixMatches(%q, %q) = %t, want %t", tc.prefix, tc.path, got, tc.want)
		}
	}
}

func TestQueryValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, name, want string
		ok              bool
	}{
		{"a=1&b=2", "b", "2", true},
		{"a=1&a=2", "a", "1", true},
		{"a", "a", "", true},
		{"x%20y=a+b", "x y", "a b", true},
		{"ab=1", "a", "", false},
		{"", "a", "", false},
	}
	for _, tc := range tests {
		got, ok := queryValue(tc.raw, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("queryValue(%q, %q) = %q, %t; want %q, %t", tc.raw, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
