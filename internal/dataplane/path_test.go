package dataplane

import (
	"net/http"
	"net/url"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, path, escaped string }{
		{"/a/b", "/a/b", "/a/b"},
		{"/a/./b", "/a/b", "/a/b"},
		{"/a/../b", "/b", "/b"},
		{"/../a", "/a", "/a"},
		{"/a/b/..", "/a/", "/a/"},
		{"/a/b/.", "/a/b/", "/a/b/"},
		{"/.", "/", "/"},
		{"/a/%2e%2e/b", "/b", "/b"},
		{"/a/%2E/b", "/a/b", "/a/b"},
		{"/a/.%2e/b", "/b", "/b"},
		{"/a%2Fb/../c", "/c", "/c"},
		{"/x/a%2Fb/./c", "/x/a/b/c", "/x/a%2Fb/c"},
		{"/a//b/../c", "/a//c", "/a//c"},
		{"/.well-known/x", "/.well-known/x", "/.well-known/x"},
		{"/a/..b/...", "/a/..b/...", "/a/..b/..."},
		{"/public/../admin", "/admin", "/admin"},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		normalizePath(u)
		if u.Path != tc.path || u.EscapedPath() != tc.escaped {
			t.Errorf("%s: path %q escaped %q, want %q %q", tc.in, u.Path, u.EscapedPath(), tc.path, tc.escaped)
		}
	}
}

func TestNormalizePathAllocatesNothing(t *testing.T) {
	u, _ := url.Parse("/api/v1/users/42")
	if n := testing.AllocsPerRun(100, func() { normalizePath(u) }); n != 0 {
		t.Errorf("normalizePath allocates %v times on a clean path", n)
	}
}

// TestDotSegmentsCannotEscapeAPrefix: what a PathPrefix sees, and what the upstream gets.
func TestDotSegmentsCannotEscapeAPrefix(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	cfg := simpleConfig(
		tagged("public", prefix("/public"), b),
		tagged("admin", prefix("/admin"), b),
	)
	g := startGateway(t, Options{}, cfg)
	c := newClient(t)
	for _, tc := range []struct{ path, route, upstream string }{
		{"/public/x", "public", "/public/x"},
		{"/public/../admin/users", "admin", "/admin/users"},
		{"/public/%2e%2e/admin", "admin", "/admin"},
		{"/admin/./users", "admin", "/admin/users"},
		{"/other/../public/./x", "public", "/public/x"},
	} {
		req, _ := http.NewRequest(http.MethodGet, g.URL+tc.path, nil)
		resp, body := do(t, c, req)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", tc.path, resp.StatusCode)
			continue
		}
		s := decodeSeen(t, body)
		if got := s.Header.Get("X-Route"); got != tc.route || s.Path != tc.upstream {
			t.Errorf("%s: route %q upstream path %q, want %q %q", tc.path, got, s.Path, tc.route, tc.upstream)
		}
	}
}

// TestEncodingCannotHideAPath: routes match the decoded path, and the upstream gets the
// client's encoding.
func TestEncodingCannotHideAPath(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{}, simpleConfig(
		tagged("admin", prefix("/admin"), b),
		tagged("rest", prefix("/"), b),
	))
	c := newClient(t)
	for _, tc := range []struct{ path, route, raw string }{
		{"/%61dmin/x", "admin", "/%61dmin/x"},
		{"/admin%2Fx", "admin", "/admin%2Fx"},
		{"/Admin", "rest", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, g.URL+tc.path, nil)
		_, body := do(t, c, req)
		s := decodeSeen(t, body)
		if got := s.Header.Get("X-Route"); got != tc.route || s.RawPath != tc.raw {
			t.Errorf("%s: route %q raw path %q, want %q %q", tc.path, got, s.RawPath, tc.route, tc.raw)
		}
	}
}
