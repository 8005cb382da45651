package mutate

import (
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

func TestApplyRequestRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		rules        *v1alpha1.MutationRules
		allowMethod  bool
		m            *extprocv3.HeaderMutation
		wantErr      bool
		wantRejected int
		check        func(t *testing.T, req *http.Request)
	}{
		{
			name: "set regular header", m: sets(opt("x-new", "v")),
			check: func(t *testing.T, r *http.Request) { eq(t, r.Header["X-New"], "v") },
		},
		{
			name: "remove regular header", m: removes("x-existing"),
			check: func(t *testing.T, r *http.Request) { eq(t, r.Header["X-Existing"]) },
		},
		{
			name: "capitalised keys", m: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("X-Upper", "u")}, RemoveHeaders: []string{"X-EXISTING"}},
			check: func(t *testing.T, r *http.Request) {
				eq(t, r.Header["X-Upper"], "u")
				eq(t, r.Header["X-Existing"])
			},
		},
		{
			name: "host ignored by default", m: sets(opt("host", "evil.example")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { same(t, r.Host, "example.com") },
		},
		{
			name: "authority ignored by default", m: sets(opt(":authority", "evil.example")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { same(t, r.Host, "example.com") },
		},
		{
			name: "authority with allowAllRouting", rules: &v1alpha1.MutationRules{AllowAllRouting: true},
			m:     sets(opt(":authority", "other.example:8080")),
			check: func(t *testing.T, r *http.Request) { same(t, r.Host, "other.example:8080") },
		},
		{
			name: "host with allowAllRouting", rules: &v1alpha1.MutationRules{AllowAllRouting: true},
			m:     sets(opt("Host", "other.example")),
			check: func(t *testing.T, r *http.Request) { same(t, r.Host, "other.example"); eq(t, r.Header["Host"]) },
		},
		{
			name: "method ignored by default", m: sets(opt(":method", "POST")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { same(t, r.Method, "GET") },
		},
		{
			name: "method with CONTINUE_AND_REPLACE", allowMethod: true, m: sets(opt(":method", "POST")),
			check: func(t *testing.T, r *http.Request) { same(t, r.Method, "POST") },
		},
		{
			name: "method with allowAllRouting", rules: &v1alpha1.MutationRules{AllowAllRouting: true}, m: sets(opt(":method", "PUT")),
			check: func(t *testing.T, r *http.Request) { same(t, r.Method, "PUT") },
		},
		{
			name: "scheme ignored by default", m: sets(opt(":scheme", "https")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { same(t, r.URL.Scheme, "http") },
		},
		{
			name: "scheme with allowAllRouting", rules: &v1alpha1.MutationRules{AllowAllRouting: true}, m: sets(opt(":scheme", "https")),
			check: func(t *testing.T, r *http.Request) { same(t, r.URL.Scheme, "https") },
		},
		{
			name: "path with query", m: sets(opt(":path", "/new%2Fp/x?q=1&r=2")),
			check: func(t *testing.T, r *http.Request) {
				same(t, r.URL.Path, "/new/p/x")
				same(t, r.URL.RawPath, "/new%2Fp/x")
				same(t, r.URL.RawQuery, "q=1&r=2")
				same(t, r.URL.RequestURI(), "/new%2Fp/x?q=1&r=2")
			},
		},
		{
			name: "path without query clears it", m: sets(opt(":path", "/only")),
			check: func(t *testing.T, r *http.Request) { same(t, r.URL.RequestURI(), "/only") },
		},
		{name: "path not origin form", m: sets(opt(":path", "http://x/y")), wantErr: true},
		{name: "path with fragment", m: sets(opt(":path", "/a#b")), wantErr: true},
		{name: "pseudo-header never removed", m: removes(":path", ":authority", "host"), wantRejected: 3},
		{name: "append to pseudo-header", m: sets(withAppend(opt(":path", "/x"), true)), wantRejected: 1},
		{name: "unknown pseudo-header", m: sets(opt(":foo", "x")), wantRejected: 1},
		{name: "status on a request", m: sets(opt(":status", "201")), wantRejected: 1},
		{
			name: "x-envoy refused by default", m: sets(opt("x-envoy-foo", "1")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { eq(t, r.Header["X-Envoy-Foo"]) },
		},
		{
			name: "x-envoy with allowEnvoy", rules: &v1alpha1.MutationRules{AllowEnvoy: true}, m: sets(opt("x-envoy-foo", "1")),
			check: func(t *testing.T, r *http.Request) { eq(t, r.Header["X-Envoy-Foo"], "1") },
		},
		{
			name: "disallowSystem refuses path", rules: &v1alpha1.MutationRules{DisallowSystem: true}, m: sets(opt(":path", "/x")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { same(t, r.URL.Path, "/a/b") },
		},
		{
			name: "disallowAll", rules: &v1alpha1.MutationRules{DisallowAll: true}, m: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("x-a", "1")}, RemoveHeaders: []string{"x-existing"}}, wantRejected: 2,
			check: func(t *testing.T, r *http.Request) { eq(t, r.Header["X-A"]); eq(t, r.Header["X-Existing"], "old") },
		},
		{
			name: "allowExpression beats disallowAll", rules: &v1alpha1.MutationRules{DisallowAll: true, AllowExpression: "x-ok-.*"},
			m: sets(opt("x-ok-1", "1"), opt("x-no", "1")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { eq(t, r.Header["X-Ok-1"], "1"); eq(t, r.Header["X-No"]) },
		},
		{
			name: "allowExpression beats routing", rules: &v1alpha1.MutationRules{AllowExpression: ":authority"},
			m:     sets(opt(":authority", "b.example")),
			check: func(t *testing.T, r *http.Request) { same(t, r.Host, "b.example") },
		},
		{
			name: "disallowExpression wins over allowExpression", rules: &v1alpha1.MutationRules{AllowExpression: "x-.*", DisallowExpression: "x-secret"},
			m: sets(opt("x-secret", "1"), opt("x-secretive", "1")), wantRejected: 1,
			check: func(t *testing.T, r *http.Request) { eq(t, r.Header["X-Secret"]); eq(t, r.Header["X-Secretive"], "1") },
		},
		{name: "disallowIsError", rules: &v1alpha1.MutationRules{DisallowIsError: true}, m: sets(opt("host", "x")), wantErr: true},
		{name: "disallowIsError on remove", rules: &v1alpha1.MutationRules{DisallowIsError: true, DisallowExpression: "x-existing"}, m: removes("x-existing"), wantErr: true},
		{name: "disallowIsError leaves hard limits counted", rules: &v1alpha1.MutationRules{DisallowIsError: true}, m: sets(opt("connection", "close")), wantRejected: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := newReq(t)
			out, err := ApplyRequest(req, tt.m, rules(t, tt.rules), tt.allowMethod)
			if tt.wantErr {
				wantMutationError(t, err)
				return
			}
			if err != nil {
				t.Fatalf("ApplyRequest: %v", err)
			}
			if out.Rejected != tt.wantRejected {
				t.Errorf("Rejected = %d, want %d", out.Rejected, tt.wantRejected)
			}
			if tt.check != nil {
				tt.check(t, req)
			}
		})
	}
}

func TestAppendActions(t *testing.T) {
	t.Parallel()
	type act = corev3.HeaderValueOption_HeaderAppendAction
	tests := []struct {
		name string
		o    *corev3.HeaderValueOption
		want []string // values of X-Existing afterwards
	}{
		{"default overwrites", opt("x-existing", "new"), []string{"new"}},
		{"append true", withAppend(opt("x-existing", "new"), true), []string{"old", "new"}},
		{"append false", withAppend(opt("x-existing", "new"), false), []string{"new"}},
		{"APPEND_IF_EXISTS_OR_ADD with append", withAppend(withAction(opt("x-existing", "new"), corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD), true), []string{"old", "new"}},
		{"ADD_IF_ABSENT present", withAction(opt("x-existing", "new"), corev3.HeaderValueOption_ADD_IF_ABSENT), []string{"old"}},
		{"OVERWRITE_IF_EXISTS_OR_ADD", withAction(opt("x-existing", "new"), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD), []string{"new"}},
		{"OVERWRITE_IF_EXISTS present", withAction(opt("x-existing", "new"), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS), []string{"new"}},
		{"append_action wins over append", withAppend(withAction(opt("x-existing", "new"), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD), true), []string{"new"}},
		{"empty overwrite removes", opt("x-existing", ""), nil},
		{"empty append skipped", withAppend(opt("x-existing", ""), true), []string{"old"}},
		{"empty kept with keep_empty_value", &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-existing"}, KeepEmptyValue: true}, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := newReq(t)
			if _, err := ApplyRequest(req, sets(tt.o), nil, false); err != nil {
				t.Fatal(err)
			}
			eq(t, req.Header["X-Existing"], tt.want...)
		})
	}
	absent := []struct {
		a    act
		want []string
	}{
		{corev3.HeaderValueOption_ADD_IF_ABSENT, []string{"v"}},
		{corev3.HeaderValueOption_OVERWRITE_IF_EXISTS, nil},
		{corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, []string{"v"}},
	}
	for _, tt := range absent {
		t.Run("absent "+tt.a.String(), func(t *testing.T) {
			t.Parallel()
			req := newReq(t)
			if _, err := ApplyRequest(req, sets(withAction(opt("x-absent", "v"), tt.a)), nil, false); err != nil {
				t.Fatal(err)
			}
			eq(t, req.Header["X-Absent"], tt.want...)
		})
	}
}

func TestSetCookie(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    *extprocv3.HeaderMutation
		want []string
	}{
		{"overwrite then append", sets(opt("set-cookie", "a=1"), withAppend(opt("Set-Cookie", "b=2"), true)), []string{"a=1", "b=2"}},
		{"append then overwrite", sets(withAppend(opt("set-cookie", "b=2"), true), opt("set-cookie", "a=1")), []string{"b=2", "a=1"}},
		{"two overwrites", sets(opt("set-cookie", "a=1"), opt("set-cookie", "b=2")), []string{"a=1", "b=2"}},
		{"append keeps upstream", sets(withAppend(opt("set-cookie", "b=2"), true)), []string{"up=1", "b=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := newResp()
			resp.Header.Add("Set-Cookie", "up=1")
			if _, err := ApplyResponse(resp, tt.m, nil); err != nil {
				t.Fatal(err)
			}
			eq(t, resp.Header["Set-Cookie"], tt.want...)
		})
	}
}

func TestInvalidMutations(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("v", 1000)
	many := &extprocv3.HeaderMutation{}
	for i := 0; i <= MaxMutations; i++ {
		many.RemoveHeaders = append(many.RemoveHeaders, "x-a")
	}
	var huge []*corev3.HeaderValueOption
	for i := 0; i < 70; i++ {
		huge = append(huge, withAppend(opt("x-big", big), true))
	}
	tests := []struct {
		name string
		m    *extprocv3.HeaderMutation
	}{
		{"CR in value", sets(opt("x-a", "a\rb"))},
		{"LF in value", sets(opt("x-a", "a\nb"))},
		{"NUL in value", sets(opt("x-a", "a\x00b"))},
		{"LF in string value", sets(&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-a", Value: "a\nb"}})},
		{"CR in name", sets(opt("x-a\r", "v"))},
		{"space in name", sets(opt("x a", "v"))},
		{"empty name", sets(opt("", "v"))},
		{"colon only", sets(opt(":", "v"))},
		{"NUL in removed name", removes("x\x00a")},
		{"value and raw_value", sets(&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-a", Value: "1", RawValue: []byte("2")}})},
		{"too many mutations", many},
		{"too large a result", sets(huge...)},
		{"content-length not a number", sets(opt("content-length", "abc"))},
		{"content-length negative", sets(opt("content-length", "-1"))},
		{"content-length signed", sets(opt("content-length", "+1"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ApplyRequest(newReq(t), tt.m, nil, false)
			wantMutationError(t, err)
			_, err = ApplyResponse(newResp(), tt.m, nil)
			wantMutationError(t, err)
		})
	}
}

func TestRawValueVersusValue(t *testing.T) {
	t.Parallel()
	req := newReq(t)
	m := sets(
		&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-raw", RawValue: []byte("r\xff")}},
		&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-value", Value: "v"}},
	)
	if _, err := ApplyRequest(req, m, nil, false); err != nil {
		t.Fatal(err)
	}
	eq(t, req.Header["X-Raw"], "r\xff") // non-UTF-8 bytes round-trip
	eq(t, req.Header["X-Value"], "v")
	if got := HeaderValue(&corev3.HeaderValue{Value: "v", RawValue: []byte("r")}); got != "r" {
		t.Errorf("HeaderValue prefers %q, want raw_value", got)
	}
	if got := HeaderValue(nil); got != "" {
		t.Errorf("HeaderValue(nil) = %q", got)
	}
}

func TestHopByHopNeverSet(t *testing.T) {
	t.Parallel()
	names := []string{"connection", "Transfer-Encoding", "te", "upgrade", "keep-alive", "proxy-connection", "trailer"}
	var opts []*corev3.HeaderValueOption
	for _, n := range names {
		opts = append(opts, opt(n, "x"))
	}
	req := newReq(t)
	out, err := ApplyRequest(req, sets(opts...), rules(t, &v1alpha1.MutationRules{AllowExpression: ".*"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if out.Rejected != len(names) {
		t.Errorf("Rejected = %d, want %d", out.Rejected, len(names))
	}
	for _, n := range names {
		if v := req.Header.Values(n); len(v) > 0 {
			t.Errorf("%s set to %q", n, v)
		}
	}
}

func TestNilMutation(t *testing.T) {
	t.Parallel()
	req := newReq(t)
	if out, err := ApplyRequest(req, nil, nil, false); err != nil || out.Rejected != 0 {
		t.Fatalf("%v %v", out, err)
	}
	if _, err := ApplyRequest(req, sets(&corev3.HeaderValueOption{}), nil, false); err != nil {
		t.Fatalf("entry without header: %v", err)
	}
}
