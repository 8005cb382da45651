package mutate

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// FuzzApplyRequest builds a HeaderMutation from the input: lines of "op key value" where op
// is s (set), a (append), r (remove), k (set, keep empty), v (set through value), or a digit
// (append_action); the ruleset varies with flags.
func FuzzApplyRequest(f *testing.F) {
	f.Add("s x-a 1\nr x-existing\na set-cookie c=1", uint8(0))
	f.Add("s :path /p?q\ns :authority h\ns :method POST\ns host h2", uint8(1))
	f.Add("s content-length 12\nr content-length\ns transfer-encoding chunked", uint8(2))
	f.Add("s x-a a\rb\ns x\x00 v\nv x-b c\nd", uint8(3))
	f.Add("2 x-a 1\n1 x-existing 2\n3 x-c 3\nk x-e ", uint8(4))
	f.Fuzz(func(t *testing.T, spec string, flags uint8) {
		m := &extprocv3.HeaderMutation{}
		for _, line := range strings.Split(spec, "\n") {
			op, rest, _ := strings.Cut(line, " ")
			key, val, _ := strings.Cut(rest, " ")
			o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, RawValue: []byte(val)}}
			switch op {
			case "r":
				m.RemoveHeaders = append(m.RemoveHeaders, key)
				continue
			case "a":
				o.Append = wrapperspb.Bool(true)
			case "k":
				o.KeepEmptyValue = true
			case "v":
				o.Header = &corev3.HeaderValue{Key: key, Value: val}
			case "0", "1", "2", "3":
				o.AppendAction = corev3.HeaderValueOption_HeaderAppendAction(op[0] - '0')
			}
			m.SetHeaders = append(m.SetHeaders, o)
		}
		rules, err := CompileRules(&v1alpha1.MutationRules{
			AllowAllRouting: flags&1 != 0, AllowEnvoy: flags&2 != 0, DisallowSystem: flags&4 != 0,
			DisallowIsError: flags&8 != 0, AllowExpression: map[bool]string{true: ".*"}[flags&16 != 0],
		})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "http://example.com/a?b", strings.NewReader("x"))
		req.Header.Set("X-Existing", "1")
		_, _ = ApplyRequest(req, m, rules, flags&32 != 0)
		for k, vs := range req.Header {
			if strings.ContainsAny(k, "\r\n\x00: ") || k == "" {
				t.Fatalf("bad header name %q", k)
			}
			if neverSet(strings.ToLower(k)) {
				t.Fatalf("hop-by-hop header %q set", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("bad value %q for %q", v, k)
				}
			}
		}
		if strings.ContainsAny(req.Host, "\r\n\x00") || strings.ContainsAny(req.Method, "\r\n\x00 ") {
			t.Fatalf("bad host %q or method %q", req.Host, req.Method)
		}
		if req.URL.RequestURI() == "" || strings.ContainsAny(req.URL.RequestURI(), "\r\n\x00 ") {
			t.Fatalf("bad request URI %q", req.URL.RequestURI())
		}
	})
}
