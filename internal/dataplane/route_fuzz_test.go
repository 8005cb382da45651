package dataplane

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// refNormalize is an independent reading of RFC 3986 §5.2.4 for the fuzz target: the
// decoded path, after removing the segments that decode to "." or "..". Segments are cut
// at the slashes of the escaped path only: an encoded slash (%2F) stays in its segment.
func refNormalize(escaped string) string {
	var out []string
	segs := strings.Split(escaped[1:], "/")
	for i, seg := range segs {
		d, err := url.PathUnescape(seg)
		if err != nil {
			d = seg
		}
		last := i == len(segs)-1
		switch d {
		case ".", "..":
			if d == ".." && len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, d)
		}
	}
	return "/" + strings.Join(out, "/")
}

// FuzzRoute sends odd request targets through the path normalisation and the route
// matching of a request: no panic; the normalised path starts with "/", has no "." or ".."
// segment (encoded or not) and does not change when normalised again; it is the decoded
// path an independent implementation of RFC 3986 §5.2.4 gives; and the PathPrefix
// "/admin" route matches exactly the paths whose normalised form is /admin or under it.
func FuzzRoute(f *testing.F) {
	for _, seed := range []string{
		"/", "/admin", "/admin/x", "/adminx", "/public/../admin", "/public/%2e%2e/admin/", "/public%2F..%2Fadmin",
		"/public/..%2Fadmin", "//admin", "/./admin/./", "/a/b/../../../admin", "/%00/../admin", "/admin%00",
		"/\xff\xfe/../admin", "/" + strings.Repeat("a/", 2000) + strings.Repeat("../", 2001) + "admin", "/.%2E/admin?x=/../",
	} {
		f.Add(seed)
	}
	ups := NewUpstreams(UpstreamOptions{})
	f.Cleanup(ups.Close)
	b := &ir.Backend{Name: "b", Protocol: ir.UpstreamHTTP1, Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: 1}}}
	snap, err := Compile(simpleConfig(prefixRoute("admin", "/admin", b), prefixRoute("public", "/public", b), prefixRoute("root", "/", b)), ups, nil)
	if err != nil {
		f.Fatal(err)
	}
	var lt *listenerTable
	for _, pt := range snap.ports {
		lt = pt.listeners[0]
	}
	f.Fuzz(func(t *testing.T, target string) {
		// What net/http does with a request line's target.
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(u.EscapedPath(), "/") {
			return
		}
		want := refNormalize(u.EscapedPath())
		normalizePath(u)
		ep := u.EscapedPath()
		if !strings.HasPrefix(ep, "/") || !strings.HasPrefix(u.Path, "/") {
			t.Fatalf("%q: normalised to %q (%q), not starting with /", target, ep, u.Path)
		}
		for _, seg := range strings.Split(ep, "/") {
			if dotSegment(seg) != 0 {
				t.Fatalf("%q: normalised to %q, which has the dot segment %q", target, ep, seg)
			}
		}
		if u.Path != want {
			t.Fatalf("%q: normalised path %q, want %q", target, u.Path, want)
		}
		again := *u
		normalizePath(&again)
		if again.Path != u.Path || again.EscapedPath() != ep {
			t.Fatalf("%q: normalising twice gives %q, once %q", target, again.EscapedPath(), ep)
		}
		rt := lt.match(&http.Request{Method: http.MethodGet, URL: u, Host: "x", Header: http.Header{}})
		if rt == nil {
			t.Fatalf("%q: no route, the catch-all should match", target)
		}
		underAdmin := want == "/admin" || strings.HasPrefix(want, "/admin/")
		if (rt.ir.Name == "admin") != underAdmin {
			t.Fatalf("%q: normalised to %q, matched route %q", target, want, rt.ir.Name)
		}
	})
}
