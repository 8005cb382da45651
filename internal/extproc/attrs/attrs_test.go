package attrs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-gateway/sluice/internal/filter"
)

func testInput() *Input {
	req := httptest.NewRequest(http.MethodPost, "http://api.example/v1/items?page=2", nil)
	req.Header.Set("Referer", "https://ref.example/")
	req.Header.Set("User-Agent", "curl/8")
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	req.ProtoMajor, req.ProtoMinor = 2, 0
	ex := &filter.Exchange{
		Request:    req,
		ClientAddr: netip.MustParseAddrPort("10.0.0.1:40000"),
		LocalAddr:  netip.MustParseAddrPort("[::1]:8443"),
		TLS:        &tls.ConnectionState{Version: tls.VersionTLS13, ServerName: "api.example", PeerCertificates: []*x509.Certificate{{}}},
		Scheme:     "https",
		ID:         "req-1",
		Start:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Route:      "default/items",
		Backend:    "default/items-svc",
	}
	resp := &http.Response{StatusCode: 201, Header: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}}}
	return &Input{Exchange: ex, Response: resp}
}

func TestEvalAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want string // protojson of the value
	}{
		{"request.path", `"/v1/items?page=2"`},
		{"request.url_path", `"/v1/items"`},
		{"request.host", `"api.example"`},
		{"request.scheme", `"https"`},
		{"request.method", `"POST"`},
		{`request.headers["x-multi"]`, `"a,b"`},
		{`request.headers[":authority"]`, `"api.example"`},
		{"request.referer", `"https://ref.example/"`},
		{"request.useragent", `"curl/8"`},
		{"request.time", `"2026-01-02T03:04:05Z"`},
		{"request.id", `"req-1"`},
		{"request.protocol", `"HTTP/2"`},
		{"request.query", `"page=2"`},
		{"source.address", `"10.0.0.1:40000"`},
		{"source.port", `40000`},
		{"destination.address", `"[::1]:8443"`},
		{"destination.port", `8443`},
		{"connection.tls_version", `"TLSv1.3"`},
		{"connection.requested_server_name", `"api.example"`},
		{"connection.mtls", `true`},
		{"response.code", `201`},
		{`response.headers["set-cookie"]`, `"a=1,b=2"`},
		{`response.headers["content-type"]`, `"application/json"`},
		{"xds.route_name", `"default/items"`},
		{"xds.cluster_name", `"default/items-svc"`},
		{`request.method == "POST" && has(request.referer)`, `true`},
		{`{"m": request.method, "n": [1, 2]}`, `{"m":"POST","n":[1,2]}`},
	}
	in := testInput()
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(map[string]string{"k": tt.expr}, true)
			if err != nil {
				t.Fatal(err)
			}
			got := p.Eval(in).GetFields()["k"]
			if got == nil {
				t.Fatalf("%s omitted", tt.expr)
			}
			b, _ := protojson.Marshal(got)
			if compact(string(b)) != tt.want {
				t.Errorf("got %s, want %s", b, tt.want)
			}
		})
	}
}

func compact(s string) string { return strings.ReplaceAll(s, " ", "") }

func TestEvalOmitsUnavailable(t *testing.T) {
	t.Parallel()
	p, err := Compile(map[string]string{
		"ref": "request.referer", "code": "response.code", "sni": "connection.requested_server_name",
		"src": "source.address", "route": "xds.route_name", "mtls": "connection.mtls", "path": "request.path",
		"bad": "1 / 0",
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	got := p.Eval(&Input{Request: req})
	want := map[string]bool{"mtls": true, "path": true}
	for k := range got.GetFields() {
		if !want[k] {
			t.Errorf("%s present: %v", k, got.GetFields()[k])
		}
	}
	for k := range want {
		if got.GetFields()[k] == nil {
			t.Errorf("%s missing", k)
		}
	}
	if got.GetFields()["mtls"].GetBoolValue() {
		t.Error("mtls true on cleartext")
	}
}

func TestCompile(t *testing.T) {
	t.Parallel()
	if p, err := Compile(nil, false); p != nil || err != nil {
		t.Errorf("nil map: %v %v", p, err)
	}
	var nilProg *Program
	if nilProg.Eval(testInput()) != nil {
		t.Error("nil program evaluated to non-nil")
	}
	_, err := Compile(map[string]string{"code": "response.code"}, false)
	if !errors.Is(err, ErrResponseOnly) || !strings.Contains(err.Error(), `"code"`) {
		t.Errorf("request-side response.*: %v", err)
	}
	_, err = Compile(map[string]string{"a": "request.path", "b": "request.path +"}, false)
	if err == nil || !strings.Contains(err.Error(), `"b"`) || errors.Is(err, ErrResponseOnly) {
		t.Errorf("syntax error: %v", err)
	}
	_, err = Compile(map[string]string{"u": "nosuch.thing"}, true)
	if err == nil || !strings.Contains(err.Error(), "undeclared") {
		t.Errorf("undeclared: %v", err)
	}
	if _, err = Compile(map[string]string{"e": " "}, true); err == nil {
		t.Error("empty expression compiled")
	}
}

func TestEvalConcurrent(t *testing.T) {
	t.Parallel()
	p, err := Compile(map[string]string{"p": "request.path", "h": `request.headers["x-multi"]`}, false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *structpb.Struct, 8)
	for range 8 {
		go func() { done <- p.Eval(testInput()) }()
	}
	for range 8 {
		if s := <-done; len(s.GetFields()) != 2 {
			t.Errorf("got %v", s)
		}
	}
}

func BenchmarkEval(b *testing.B) {
	p, err := Compile(map[string]string{"path": "request.path", "src": "source.address", "ua": "request.useragent"}, false)
	if err != nil {
		b.Fatal(err)
	}
	in := testInput()
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Eval(in)
	}
}
