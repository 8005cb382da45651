package dataplane

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
)

func TestRequestRedirect(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	tests := []struct {
		name     string
		prefix   string
		redirect ir.Redirect
		host     string
		path     string
		wantCode int
		// wantLoc has %d where the listener's port goes.
		wantLoc string
	}{
		{"scheme-https", "/a", ir.Redirect{Scheme: "https"}, "example.com", "/a/x?q=1", 302, "https://example.com/a/x?q=1"},
		{"scheme-http", "/b", ir.Redirect{Scheme: "http", StatusCode: 301}, "example.com", "/b", 301, "http://example.com/b"},
		{"hostname-keeps-listener-port", "/c", ir.Redirect{Hostname: "new.example.com"}, "example.com", "/c", 302, "http://new.example.com:%d/c"},
		{"listener-port-not-host-port", "/d", ir.Redirect{}, "example.com:9999", "/d", 302, "http://example.com:%d/d"},
		{"explicit-port", "/e", ir.Redirect{Scheme: "https", Port: 8443}, "example.com", "/e", 302, "https://example.com:8443/e"},
		{"explicit-well-known-port", "/f", ir.Redirect{Port: 80}, "example.com", "/f", 302, "http://example.com/f"},
		{"https-port-80-kept", "/g", ir.Redirect{Scheme: "https", Port: 80}, "example.com", "/g", 302, "https://example.com:80/g"},
		{"full-path", "/h", ir.Redirect{Path: &ir.Rewrite{PathType: ir.ReplaceFullPath, Path: "/new"}}, "example.com", "/h/deep?x=y", 302, "http://example.com:%d/new?x=y"},
		{"prefix", "/old", ir.Redirect{Scheme: "https", Path: &ir.Rewrite{PathType: ir.ReplacePrefixMatch, Path: "/new"}}, "example.com", "/old/x/y", 302, "https://example.com/new/x/y"},
		{"prefix-strip", "/strip", ir.Redirect{Scheme: "https", Path: &ir.Rewrite{PathType: ir.ReplacePrefixMatch, Path: "/"}}, "example.com", "/strip/z", 302, "https://example.com/z"},
		{"status-303", "/i", ir.Redirect{Scheme: "https", StatusCode: 303}, "example.com", "/i", 303, "https://example.com/i"},
		{"status-307", "/j", ir.Redirect{Scheme: "https", StatusCode: 307}, "example.com", "/j", 307, "https://example.com/j"},
		{"status-308", "/k", ir.Redirect{Scheme: "https", StatusCode: 308}, "example.com", "/k", 308, "https://example.com/k"},
	}
	var routes []*ir.Route
	for _, tc := range tests {
		r := prefixRoute(tc.name, tc.prefix, b)
		rd := tc.redirect
		r.Redirect = &rd
		routes = append(routes, r)
	}
	g := startGateway(t, Options{}, simpleConfig(routes...))
	c := newClient(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, c, g.URL, tc.host, tc.path)
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tc.wantCode, body)
			}
			want := tc.wantLoc
			if strings.Contains(want, "%d") {
				want = fmt.Sprintf(want, g.Port)
			}
			if got := resp.Header.Get("Location"); got != want {
				t.Errorf("Location %q, want %q", got, want)
			}
		})
	}
}

func TestURLRewrite(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	rpm := func(p string) *ir.Rewrite { return &ir.Rewrite{PathType: ir.ReplacePrefixMatch, Path: p} }
	tests := []struct {
		prefix   string
		rewrite  *ir.Rewrite
		path     string
		wantPath string
		wantQ    string
	}{
		// The table of the Gateway API's HTTPPathModifier documentation.
		{"/foo", rpm("/xyz"), "/foo/bar", "/xyz/bar", ""},
		{"/foo", rpm("/xyz/"), "/foo/bar", "/xyz/bar", ""},
		{"/foo/", rpm("/xyz"), "/foo/bar", "/xyz/bar", ""},
		{"/foo/", rpm("/xyz/"), "/foo/bar", "/xyz/bar", ""},
		{"/foo", rpm("/xyz"), "/foo", "/xyz", ""},
		{"/foo", rpm("/xyz"), "/foo/", "/xyz/", ""},
		{"/foo", rpm(""), "/foo/bar", "/bar", ""},
		{"/foo", rpm(""), "/foo/", "/", ""},
		{"/foo", rpm(""), "/foo", "/", ""},
		{"/foo", rpm("/"), "/foo/", "/", ""},
		{"/foo", rpm("/"), "/foo", "/", ""},
		// Beyond the table.
		{"/foo", rpm("/"), "/foo/bar/baz", "/bar/baz", ""},
		{"/foo", rpm("/xyz"), "/foo/bar?q=1&r=2", "/xyz/bar", "q=1&r=2"},
		{"/", rpm("/xyz"), "/bar", "/xyz/bar", ""},
		{"/", rpm("/"), "/bar/", "/bar/", ""},
		{"/foo", &ir.Rewrite{PathType: ir.ReplaceFullPath, Path: "/full"}, "/foo/bar?q=1", "/full", "q=1"},
		{"/foo", &ir.Rewrite{PathType: ir.ReplaceFullPath, Path: "/full/"}, "/foo", "/full/", ""},
	}
	var vhs []*ir.VirtualHost
	for i, tc := range tests {
		r := prefixRoute(fmt.Sprint("r", i), tc.prefix, b)
		r.Rewrite = tc.rewrite
		vhs = append(vhs, vhostOf(fmt.Sprintf("case%d.test", i), r))
	}
	hostRoute := prefixRoute("host", "/", b)
	hostRoute.Rewrite = &ir.Rewrite{Hostname: "internal.example"}
	vhs = append(vhs, vhostOf("host.test", hostRoute))
	g := startGateway(t, Options{}, &ir.Config{Ports: []*ir.Port{httpPort(listener("l", "", vhs...))}})
	c := newClient(t)
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%s+%s:%s=%s", tc.prefix, tc.rewrite.Path, tc.path, tc.wantPath), func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, c, g.URL, fmt.Sprintf("case%d.test", i), tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			s := decodeSeen(t, body)
			if s.Path != tc.wantPath || s.Query != tc.wantQ {
				t.Errorf("upstream got %q?%q, want %q?%q", s.Path, s.Query, tc.wantPath, tc.wantQ)
			}
		})
	}
	t.Run("hostname", func(t *testing.T) {
		t.Parallel()
		_, body := get(t, c, g.URL, "host.test", "/p")
		s := decodeSeen(t, body)
		if s.Host != "internal.example" || s.Path != "/p" {
			t.Errorf("upstream got host %q path %q", s.Host, s.Path)
		}
		if got := s.Header.Get("X-Forwarded-Host"); got != "host.test" {
			t.Errorf("X-Forwarded-Host = %q, want the client's host", got)
		}
	})
}

func TestWeightedBackends(t *testing.T) {
	t.Parallel()
	a := backendOf(t, "a", echoBackend(t, "a"))
	b := backendOf(t, "b", echoBackend(t, "b"))
	weighted := func(name string, ws ...ir.WeightedBackend) *ir.VirtualHost {
		return vhostOf(name, &ir.Route{Name: name, Match: prefix("/"), Backends: ws})
	}
	g := startGateway(t, Options{}, &ir.Config{Ports: []*ir.Port{httpPort(listener("l", "",
		weighted("one-zero", ir.WeightedBackend{Weight: 1, Backend: a}, ir.WeightedBackend{Weight: 0, Backend: b}),
		weighted("half", ir.WeightedBackend{Weight: 1, Backend: a}, ir.WeightedBackend{Weight: 1, Backend: b}),
		weighted("zero", ir.WeightedBackend{Weight: 0, Backend: a}, ir.WeightedBackend{Weight: 0, Backend: b}),
		weighted("none", nil...),
		weighted("unresolved", ir.WeightedBackend{Weight: 1}),
	))}})
	c := newClient(t)
	count := func(host string, n int) map[string]int {
		got := map[string]int{}
		for range n {
			resp, body := get(t, c, g.URL, host, "/")
			if resp.StatusCode == http.StatusOK {
				got[decodeSeen(t, body).Backend]++
			} else {
				got[fmt.Sprint(resp.StatusCode)]++
				if !strings.Contains(body, "backend") {
					t.Errorf("%s: body %q does not say why", host, body)
				}
			}
		}
		return got
	}
	t.Run("one-zero", func(t *testing.T) {
		t.Parallel()
		if got := count("one-zero", 30); got["a"] != 30 {
			t.Errorf("got %v, want all 30 on a", got)
		}
	})
	t.Run("half", func(t *testing.T) {
		t.Parallel()
		if got := count("half", 60); got["a"] == 0 || got["b"] == 0 || got["a"]+got["b"] != 60 {
			t.Errorf("got %v, want both backends used", got)
		}
	})
	for _, host := range []string{"zero", "none", "unresolved"} {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			if got := count(host, 3); got["500"] != 3 {
				t.Errorf("got %v, want 500s", got)
			}
		})
	}
}

func TestRoundRobinEndpoints(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "pool", echoBackend(t, "e1"), echoBackend(t, "e2"), echoBackend(t, "e3"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
	c := newClient(t)
	got := map[string]int{}
	for range 30 {
		_, body := get(t, c, g.URL, "", "/")
		got[decodeSeen(t, body).Backend]++
	}
	if got["e1"] != 10 || got["e2"] != 10 || got["e3"] != 10 {
		t.Errorf("endpoints got %v, want 10 each", got)
	}
}
