package dataplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// corsRoute is a prefix route to b with a CORS filter.
func corsRoute(prefix string, b *ir.Backend, c *ir.CORS) *ir.Route {
	r := prefixRoute("default/cors"+prefix, prefix, b)
	r.CORS = c
	return r
}

// TestCORS covers the cases of the Gateway API conformance test HTTPRouteCORS (routes
// /cors-1, /cors-2, /cors-wildcard-*, as in its manifests), and what it leaves to the
// implementation.
func TestCORS(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	redirect := corsRoute("/cors-redirect", nil, &ir.CORS{AllowOrigins: []string{"https://www.foo.com"}, MaxAge: 5})
	redirect.Backends = nil
	redirect.Redirect = &ir.Redirect{Hostname: "elsewhere.example", Port: 8080, StatusCode: 302}
	headerFilter := corsRoute("/cors-header-filter", b, &ir.CORS{AllowOrigins: []string{"https://www.foo.com"}, MaxAge: 5})
	headerFilter.RequestHeaders = &ir.HeaderModifier{Remove: []string{"Origin"}}
	headerFilter.ResponseHeaders = &ir.HeaderModifier{Set: []ir.Header{
		{Name: "Access-Control-Allow-Origin", Value: "https://evil.example"},
		{Name: "Vary", Value: "Accept-Encoding"},
	}}
	g := startGateway(t, Options{}, simpleConfig(
		corsRoute("/cors-1", b, &ir.CORS{
			AllowOrigins:     []string{"https://www.foo.com", "https://*.bar.com"},
			AllowMethods:     []string{"GET", "OPTIONS"},
			AllowHeaders:     []string{"x-header-1", "x-header-2"},
			ExposeHeaders:    []string{"x-header-3", "x-header-4"},
			AllowCredentials: true,
			MaxAge:           3600,
		}),
		corsRoute("/cors-2", b, &ir.CORS{AllowOrigins: []string{"https://www.foo.com"}, AllowMethods: []string{"*"}, MaxAge: 5}),
		corsRoute("/cors-wildcard-origin", b, &ir.CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"PUT"}, ExposeHeaders: []string{"*"}, MaxAge: 5}),
		corsRoute("/cors-wildcard-methods-headers", b, &ir.CORS{
			AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"},
			ExposeHeaders: []string{"*"}, AllowCredentials: true, MaxAge: 5,
		}),
		corsRoute("/cors-wildcard-methods-headers-unauth", b, &ir.CORS{
			AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}, MaxAge: 5,
		}),
		corsRoute("/cors-ports", b, &ir.CORS{AllowOrigins: []string{"http://localhost:8080", "https://*"}, MaxAge: 5}),
		corsRoute("/cors-none", b, &ir.CORS{MaxAge: 5}),
		redirect,
		headerFilter,
		prefixRoute("default/plain", "/plain", b),
	))
	c := newClient(t)

	const (
		acao   = "Access-Control-Allow-Origin"
		acac   = "Access-Control-Allow-Credentials"
		acam   = "Access-Control-Allow-Methods"
		acah   = "Access-Control-Allow-Headers"
		aceh   = "Access-Control-Expose-Headers"
		maxAge = "Access-Control-Max-Age"
		absent = "<absent>"
	)
	preflight := func(origin, method, headers string) map[string]string {
		h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			h["Access-Control-Request-Headers"] = headers
		}
		return h
	}
	origin := func(o string) map[string]string { return map[string]string{"Origin": o} }
	cors1Preflight := map[string]string{
		acam: "GET, OPTIONS", acah: "x-header-1, x-header-2", aceh: "x-header-3, x-header-4",
		maxAge: "3600", acac: "true", "Vary": "Origin",
	}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for k2, v2 := range m {
			if k2 != k {
				out[k2] = v2
			}
		}
		return out
	}
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		status int // 0 is 200
		// backend says whether the request must reach the backend.
		backend bool
		// want are response headers, all values joined with ", "; absent for none.
		want map[string]string
	}{
		// The conformance test's cases.
		{name: "preflight exact origin", method: "OPTIONS", path: "/cors-1",
			header: preflight("https://www.foo.com", "GET", "x-header-1, x-header-2"),
			want:   with(cors1Preflight, acao, "https://www.foo.com")},
		{name: "preflight wildcard origin", method: "OPTIONS", path: "/cors-1",
			header: preflight("https://www.bar.com", "GET", "x-header-1, x-header-2"),
			want:   with(cors1Preflight, acao, "https://www.bar.com")},
		{name: "preflight wildcard origin several labels", method: "OPTIONS", path: "/cors-1/sub",
			header: preflight("https://xpto.www.bar.com", "GET", "x-header-1, x-header-2"),
			want:   with(cors1Preflight, acao, "https://xpto.www.bar.com")},
		{name: "preflight origin not allowed", method: "OPTIONS", path: "/cors-1",
			header: preflight("https://foobar.com", "GET", ""), status: http.StatusForbidden,
			want: map[string]string{acao: absent, acam: absent, acac: absent, maxAge: absent, "Vary": "Origin"}},
		{name: "simple exact origin", method: "GET", path: "/cors-1", backend: true,
			header: preflight("https://www.foo.com", "GET", "x-header-1, x-header-2"),
			want: map[string]string{acao: "https://www.foo.com", acac: "true", aceh: "x-header-3, x-header-4",
				acam: absent, acah: absent, maxAge: absent, "Vary": "Origin"}},
		{name: "simple wildcard origin", method: "GET", path: "/cors-1", backend: true,
			header: origin("https://www.bar.com"), want: map[string]string{acao: "https://www.bar.com", acac: "true"}},
		{name: "simple origin not allowed", method: "GET", path: "/cors-1", backend: true,
			header: origin("https://foobar.com"), want: map[string]string{acao: absent, acac: absent, aceh: absent, "Vary": "Origin"}},
		{name: "preflight wildcard methods", method: "OPTIONS", path: "/cors-2",
			header: preflight("https://www.foo.com", "POST", ""),
			want:   map[string]string{acao: "https://www.foo.com", acam: "POST", acac: absent, acah: absent, maxAge: "5"}},
		{name: "preflight wildcard origin", method: "OPTIONS", path: "/cors-wildcard-origin",
			header: preflight("https://foobar.com", "PUT", ""),
			want:   map[string]string{acao: "*", acam: "PUT", acac: absent, aceh: "*", "Vary": absent}},
		{name: "preflight wildcard origin with port", method: "OPTIONS", path: "/cors-wildcard-origin",
			header: preflight("https://foobar.com:12345", "PUT", ""),
			want:   map[string]string{acao: "*", acam: "PUT", acac: absent}},
		{name: "request wildcard origin with port", method: "PUT", path: "/cors-wildcard-origin", backend: true,
			header: origin("https://foobar.com:12345"), want: map[string]string{acao: "*", acac: absent}},
		{name: "request wildcard origin", method: "PUT", path: "/cors-wildcard-origin", backend: true,
			header: origin("https://foobar.com"), want: map[string]string{acao: "*", acac: absent, aceh: "*"}},
		{name: "preflight wildcards with credentials echo", method: "OPTIONS", path: "/cors-wildcard-methods-headers",
			header: preflight("https://other.foo.com", "PUT", "x-header-1, x-header-2"),
			want: map[string]string{acao: "https://other.foo.com", acam: "PUT", acah: "x-header-1, x-header-2",
				acac: "true", "Vary": "Origin"}},
		{name: "preflight wildcards without credentials", method: "OPTIONS", path: "/cors-wildcard-methods-headers-unauth",
			header: preflight("https://other.foo.com", "PUT", "x-header-1, x-header-2"),
			want:   map[string]string{acao: "*", acam: "PUT", acah: "x-header-1, x-header-2", acac: absent}},
		{name: "request wildcards with credentials", method: "GET", path: "/cors-wildcard-methods-headers", backend: true,
			header: origin("https://other.foo.com"),
			// "*" is a header name to a credentialed request: the response's own are listed.
			want: map[string]string{acao: "https://other.foo.com", acac: "true",
				aceh: "Content-Length, Content-Type, Date, Vary, X-Backend"}},
		{name: "request wildcards without credentials", method: "GET", path: "/cors-wildcard-methods-headers-unauth", backend: true,
			header: origin("https://other.foo.com"), want: map[string]string{acao: "*", acac: absent}},

		// What the conformance test leaves open.
		{name: "preflight without requested headers omits the echo", method: "OPTIONS", path: "/cors-wildcard-methods-headers",
			header: preflight("https://other.foo.com", "DELETE", ""), want: map[string]string{acam: "DELETE", acah: absent}},
		{name: "wildcard never matches the bare domain", method: "OPTIONS", path: "/cors-1",
			header: preflight("https://bar.com", "GET", ""), status: http.StatusForbidden, want: map[string]string{acao: absent}},
		{name: "wildcard needs DNS characters", method: "GET", path: "/cors-1", backend: true,
			header: origin("https://a.com/x.bar.com"), want: map[string]string{acao: absent}},
		{name: "hosts compare without case", method: "GET", path: "/cors-1", backend: true,
			header: origin("https://WWW.Foo.com"), want: map[string]string{acao: "https://WWW.Foo.com"}},
		{name: "scheme must match", method: "GET", path: "/cors-1", backend: true,
			header: origin("http://www.foo.com"), want: map[string]string{acao: absent}},
		{name: "default port is explicit port", method: "GET", path: "/cors-1", backend: true,
			header: origin("https://www.foo.com:443"), want: map[string]string{acao: "https://www.foo.com:443"}},
		{name: "other port is another origin", method: "GET", path: "/cors-1", backend: true,
			header: origin("https://www.foo.com:8443"), want: map[string]string{acao: absent}},
		{name: "configured port", method: "GET", path: "/cors-ports", backend: true,
			header: origin("http://localhost:8080"), want: map[string]string{acao: "http://localhost:8080"}},
		{name: "configured port only", method: "GET", path: "/cors-ports", backend: true,
			header: origin("http://localhost"), want: map[string]string{acao: absent}},
		{name: "any host of a scheme", method: "GET", path: "/cors-ports", backend: true,
			header: origin("https://anything.example"), want: map[string]string{acao: "https://anything.example"}},
		{name: "any host keeps the default port", method: "GET", path: "/cors-ports", backend: true,
			header: origin("https://anything.example:444"), want: map[string]string{acao: absent}},
		{name: "null origin", method: "GET", path: "/cors-1", backend: true,
			header: origin("null"), want: map[string]string{acao: absent}},
		{name: "no allowed origins", method: "OPTIONS", path: "/cors-none",
			header: preflight("https://www.foo.com", "GET", ""), status: http.StatusForbidden, want: map[string]string{acao: absent}},
		{name: "OPTIONS without request method is not a preflight", method: "OPTIONS", path: "/cors-1", backend: true,
			header: origin("https://www.foo.com"), want: map[string]string{acao: "https://www.foo.com", acam: absent, maxAge: absent}},
		{name: "no Origin varies", method: "GET", path: "/cors-1", backend: true,
			want: map[string]string{acao: absent, "Vary": "Origin"}},
		{name: "no Origin gets the static star", method: "GET", path: "/cors-wildcard-origin", backend: true,
			want: map[string]string{acao: "*", "Vary": absent}},
		{name: "route without CORS", method: "GET", path: "/plain", backend: true,
			header: origin("https://www.foo.com"), want: map[string]string{acao: absent, "Vary": absent}},
		{name: "preflight answered before a redirect", method: "OPTIONS", path: "/cors-redirect",
			header: preflight("https://www.foo.com", "GET", ""), want: map[string]string{acao: "https://www.foo.com", "Location": absent}},
		{name: "redirect carries CORS headers", method: "GET", path: "/cors-redirect", status: http.StatusFound,
			header: origin("https://www.foo.com"), want: map[string]string{acao: "https://www.foo.com", "Location": "http://elsewhere.example:8080/cors-redirect"}},
		{name: "CORS sees the Origin before header filters and wins over them", method: "GET", path: "/cors-header-filter", backend: true,
			header: origin("https://www.foo.com"), want: map[string]string{acao: "https://www.foo.com", "Vary": "Accept-Encoding, Origin"}},
		{name: "upstream headers kept when origin not allowed", method: "GET", path: "/cors-header-filter", backend: true,
			header: origin("https://foobar.com"), want: map[string]string{acao: "https://evil.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, g.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, body := do(t, c, req)
			want := tc.status
			if want == 0 {
				want = http.StatusOK
			}
			if resp.StatusCode != want {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, want, body)
			}
			if got := resp.Header.Get("X-Backend") != ""; got != tc.backend {
				t.Errorf("reached the backend: %v, want %v", got, tc.backend)
			}
			if tc.backend {
				if s := decodeSeen(t, body); s.Method != tc.method {
					t.Errorf("backend saw method %s, want %s", s.Method, tc.method)
				}
			} else if resp.StatusCode == http.StatusOK && body != "" {
				t.Errorf("preflight body %q, want none", body)
			}
			for k, v := range tc.want {
				got := strings.Join(resp.Header.Values(k), ", ")
				if v == absent {
					if _, ok := resp.Header[http.CanonicalHeaderKey(k)]; ok {
						t.Errorf("%s: %q, want none", k, got)
					}
					continue
				}
				if got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestCORSLocalReplies checks that a route's error replies carry its CORS headers, so that
// a page can read why its request failed.
func TestCORSLocalReplies(t *testing.T) {
	t.Parallel()
	r := corsRoute("/", nil, &ir.CORS{AllowOrigins: []string{"https://www.foo.com"}, AllowCredentials: true, MaxAge: 5})
	r.Backends = []ir.WeightedBackend{{Weight: 1}} // unresolved: 500
	g := startGateway(t, Options{}, simpleConfig(r))
	req, err := http.NewRequest(http.MethodGet, g.URL+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://www.foo.com")
	resp, _ := do(t, newClient(t), req)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", resp.StatusCode)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://www.foo.com" {
		t.Errorf("Access-Control-Allow-Origin %q, want the origin", got)
	}
	if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("Access-Control-Allow-Credentials %q, want true", got)
	}
}

func TestParseOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		scheme string
		host   string
		port   int
		ok     bool
	}{
		{in: "https://www.foo.com", scheme: "https", host: "www.foo.com", port: 443, ok: true},
		{in: "http://www.foo.com", scheme: "http", host: "www.foo.com", port: 80, ok: true},
		{in: "HTTP://a.b:8080", scheme: "HTTP", host: "a.b", port: 8080, ok: true},
		{in: "http://[::1]", scheme: "http", host: "[::1]", port: 80, ok: true},
		{in: "http://[::1]:81", scheme: "http", host: "[::1]", port: 81, ok: true},
		{in: "chrome-extension://abc", scheme: "chrome-extension", host: "abc", port: 0, ok: true},
		{in: "null"},
		{in: ""},
		{in: "https://"},
		{in: "://a.b"},
		{in: "https://a.b:"},
		{in: "https://:80"},
		{in: "https://a.b:0"},
		{in: "https://a.b:65536"},
		{in: "https://a.b:123456"},
		{in: "https://a.b:8a"},
	}
	for _, tc := range tests {
		scheme, host, port, ok := parseOrigin(tc.in)
		if ok != tc.ok || (ok && (scheme != tc.scheme || host != tc.host || port != tc.port)) {
			t.Errorf("parseOrigin(%q) = %q, %q, %d, %v; want %q, %q, %d, %v",
				tc.in, scheme, host, port, ok, tc.scheme, tc.host, tc.port, tc.ok)
		}
	}
}

func TestCORSAllowed(t *testing.T) {
	t.Parallel()
	f, err := compileCORS(&ir.CORS{AllowOrigins: []string{"https://www.foo.com", "https://*.Bar.com", "http://*:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origin string
		want   bool
	}{
		{"https://www.foo.com", true},
		{"https://www.foo.com:443", true},
		{"https://www.foo.com.", false},
		{"https://www.foo.comx", false},
		{"https://xwww.foo.com", false},
		{"https://a.bar.com", true},
		{"https://a.b.c.BAR.com", true},
		{"https://bar.com", false},
		{"https://.bar.com", false},
		{"https://abar.com", false},
		{"https://a_b.bar.com", false},
		{"http://a.bar.com", false},
		{"http://anything:8080", true},
		{"http://anything", false},
		{"https://anything:8080", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := f.allowed(tc.origin); got != tc.want {
			t.Errorf("allowed(%q) = %v, want %v", tc.origin, got, tc.want)
		}
	}
	if _, err := compileCORS(&ir.CORS{AllowOrigins: []string{"www.foo.com"}}); err == nil {
		t.Error("compileCORS accepted an origin without a scheme")
	}
}

// TestCORSAllowedAllocs keeps origin matching free of allocations. Not parallel:
// testing.AllocsPerRun refuses to run beside other tests.
func TestCORSAllowedAllocs(t *testing.T) {
	f, err := compileCORS(&ir.CORS{AllowOrigins: []string{"https://www.foo.com", "https://*.bar.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if !f.allowed("https://A.www.Bar.com:443") || f.allowed("https://foobar.com") {
			t.Fatal("wrong match")
		}
	}); n != 0 {
		t.Errorf("allowed allocates %v times, want 0", n)
	}
}
