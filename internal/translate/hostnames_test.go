package translate

import (
	"reflect"
	"testing"
)

func TestIntersectHostname(t *testing.T) {
	tests := []struct {
		listener, route string
		want            string
		ok              bool
	}{
		{"", "www.example.com", "www.example.com", true},
		{"", "*.example.com", "*.example.com", true},
		{"www.example.com", "www.example.com", "www.example.com", true},
		{"www.example.com", "api.example.com", "", false},
		{"*.example.com", "www.example.com", "www.example.com", true},
		{"*.example.com", "a.b.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", "", false},
		{"*.example.com", "www.example.net", "", false},
		{"*.example.com", "*.example.com", "*.example.com", true},
		{"*.example.com", "*.foo.example.com", "*.foo.example.com", true},
		{"*.foo.example.com", "*.example.com", "*.foo.example.com", true},
		{"www.example.com", "*.example.com", "www.example.com", true},
		{"a.b.example.com", "*.example.com", "a.b.example.com", true},
		{"example.com", "*.example.com", "", false},
		{"*.example.com", "*.example.net", "", false},
		// A suffix that is not at a label boundary does not match.
		{"*.ample.com", "www.example.com", "", false},
	}
	for _, tc := range tests {
		got, ok := intersectHostname(tc.listener, tc.route)
		if got != tc.want || ok != tc.ok {
			t.Errorf("intersectHostname(%q, %q) = %q, %v; want %q, %v", tc.listener, tc.route, got, ok, tc.want, tc.ok)
		}
	}
}

func TestEffectiveHostnames(t *testing.T) {
	tests := []struct {
		listener string
		route    []string
		want     []string
	}{
		{"", nil, []string{""}},
		{"*.example.com", nil, []string{"*.example.com"}},
		{"*.example.com", []string{"foo.example.com", "bar.other.com", "*.example.com", "foo.example.com"},
			[]string{"foo.example.com", "*.example.com"}},
		{"*.example.com", []string{"example.com"}, nil},
		{"", []string{"*.a.com", "b.com", "*.long.a.com", "a.com"}, []string{"a.com", "b.com", "*.long.a.com", "*.a.com"}},
	}
	for _, tc := range tests {
		if got := effectiveHostnames(tc.listener, tc.route); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("effectiveHostnames(%q, %q) = %q, want %q", tc.listener, tc.route, got, tc.want)
		}
	}
}

func TestValidateHostname(t *testing.T) {
	for _, h := range []string{"example.com", "*.example.com", "a-b.c", "localhost", "xn--bcher-kva.example"} {
		if err := validateHostname(h, true); err != nil {
			t.Errorf("validateHostname(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"", "1.2.3.4", "::1", "Example.com", "foo.*.com", "*", "*example.com", "-a.com", "a..b", "a_b.com"} {
		if err := validateHostname(h, true); err == nil {
			t.Errorf("validateHostname(%q) accepted", h)
		}
	}
	if err := validateHostname("*.example.com", false); err == nil {
		t.Error("wildcard accepted where not allowed")
	}
}
