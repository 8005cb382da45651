package mutate

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// flat renders a HeaderMap as "key=value" lines, reading raw_value or value.
func flat(m *corev3.HeaderMap) []string {
	var out []string
	for _, h := range m.GetHeaders() {
		out = append(out, h.GetKey()+"="+HeaderValue(h))
	}
	return out
}

func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest(http.MethodPost, "http://api.example:8080/p%2Fq?x=1", strings.NewReader("hello"))
	req.Header.Set("X-B", "2")
	req.Header.Add("X-A", "1")
	req.Header.Add("X-A", "1b")
	req.Header.Set("Content-Length", "999") // the data plane ignores it; ContentLength rules
	req.Header.Set("Host", "ignored")
	got := flat(RequestHeaders(req, "https", nil, ""))
	want := []string{":method=POST", ":scheme=https", ":authority=api.example:8080", ":path=/p%2Fq?x=1",
		"content-length=5", "x-a=1", "x-a=1b", "x-b=2"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestRequestHeadersContentLength(t *testing.T) {
	t.Parallel()
	get := httptest.NewRequest(http.MethodGet, "/", nil)
	if s := strings.Join(flat(RequestHeaders(get, "http", nil, "")), " "); strings.Contains(s, "content-length") {
		t.Errorf("GET without length sent %s", s)
	}
	chunked := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	chunked.ContentLength = -1
	if s := strings.Join(flat(RequestHeaders(chunked, "http", nil, "")), " "); strings.Contains(s, "content-length") {
		t.Errorf("chunked request sent %s", s)
	}
}

func TestValueFields(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-A", "v")
	tests := []struct {
		field          v1alpha1.HeaderValueField
		wantRaw, wantV bool
	}{
		{"", true, false},
		{v1alpha1.HeaderValueRaw, true, false},
		{v1alpha1.HeaderValueString, false, true},
		{v1alpha1.HeaderValueBoth, true, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.field), func(t *testing.T) {
			t.Parallel()
			for _, h := range RequestHeaders(req, "http", nil, tt.field).GetHeaders() {
				if (len(h.GetRawValue()) > 0) != tt.wantRaw || (h.GetValue() != "") != tt.wantV {
					t.Errorf("%s: raw %q value %q", h.GetKey(), h.GetRawValue(), h.GetValue())
				}
			}
		})
	}
}

func TestResponseHeadersAndTrailers(t *testing.T) {
	t.Parallel()
	resp := newResp()
	resp.StatusCode = 404
	resp.Header.Set("Content-Length", "123") // stale: ContentLength is what is written
	got := flat(ResponseHeaders(resp, nil, ""))
	want := []string{":status=404", "content-length=5", "content-type=text/plain"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	resp.ContentLength = -1
	got = flat(ResponseHeaders(resp, nil, ""))
	if !slices.Equal(got, []string{":status=404", "content-type=text/plain"}) {
		t.Errorf("unknown length: got %q", got)
	}
	tr := http.Header{"Grpc-Status": {"0"}, "X-Checksum": {"abc"}}
	fwd, err := CompileForwardRules(&v1alpha1.ForwardRules{DisallowedHeaders: []string{"X-Checksum"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := flat(Trailers(tr, fwd, "")); !slices.Equal(got, []string{"grpc-status=0"}) {
		t.Errorf("trailers: got %q", got)
	}
}

func TestForwardRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		rules   *v1alpha1.ForwardRules
		allowed []string
		denied  []string
	}{
		{"nil forwards all", nil, []string{"x-a", "authorization"}, nil},
		{"allow list", &v1alpha1.ForwardRules{AllowedHeaders: []string{"X-A", "re:x-b-.*"}}, []string{"x-a", "x-b-1"}, []string{"x-b", "x-c", "x-aa"}},
		{"disallow list", &v1alpha1.ForwardRules{DisallowedHeaders: []string{"authorization", "re:cookie|x-secret.*"}}, []string{"x-a"}, []string{"authorization", "cookie", "x-secret-1"}},
		{"disallow wins", &v1alpha1.ForwardRules{AllowedHeaders: []string{"re:x-.*"}, DisallowedHeaders: []string{"x-b"}}, []string{"x-a"}, []string{"x-b", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := CompileForwardRules(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.allowed {
				if !f.Allowed(n) {
					t.Errorf("%s denied", n)
				}
			}
			for _, n := range tt.denied {
				if f.Allowed(n) {
					t.Errorf("%s allowed", n)
				}
			}
		})
	}
	// Pseudo-headers are always sent.
	f, _ := CompileForwardRules(&v1alpha1.ForwardRules{AllowedHeaders: []string{"x-a"}})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-A", "1")
	req.Header.Set("X-B", "1")
	got := flat(RequestHeaders(req, "http", f, ""))
	if !slices.Equal(got, []string{":method=GET", ":scheme=http", ":authority=example.com", ":path=/", "x-a=1"}) {
		t.Errorf("got %q", got)
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	if _, err := CompileRules(&v1alpha1.MutationRules{AllowExpression: "("}); err == nil || !strings.Contains(err.Error(), "allowExpression") {
		t.Errorf("allowExpression: %v", err)
	}
	if _, err := CompileRules(&v1alpha1.MutationRules{DisallowExpression: "[z-a]"}); err == nil || !strings.Contains(err.Error(), "disallowExpression") {
		t.Errorf("disallowExpression: %v", err)
	}
	if _, err := CompileForwardRules(&v1alpha1.ForwardRules{AllowedHeaders: []string{"ok", "re:("}}); err == nil || !strings.Contains(err.Error(), "allowedHeaders: [1]") {
		t.Errorf("forward: %v", err)
	}
}
