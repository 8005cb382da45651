package mutate

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// opt is a set_headers entry; the helpers below build the common shapes.
func opt(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

func withAction(o *corev3.HeaderValueOption, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	o.AppendAction = a
	return o
}

func withAppend(o *corev3.HeaderValueOption, b bool) *corev3.HeaderValueOption {
	o.Append = wrapperspb.Bool(b)
	return o
}

func sets(o ...*corev3.HeaderValueOption) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{SetHeaders: o}
}

func removes(n ...string) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{RemoveHeaders: n}
}

func newReq(t testing.TB) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://example.com/a/b?x=1", nil)
	req.Header.Set("X-Existing", "old")
	req.Header.Add("Set-Cookie", "up=1")
	return req
}

func newResp() *http.Response {
	h := http.Header{}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", "5")
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: h, ContentLength: 5, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

func rules(t testing.TB, r *v1alpha1.MutationRules) *Rules {
	t.Helper()
	c, err := CompileRules(r)
	if err != nil {
		t.Fatalf("CompileRules: %v", err)
	}
	return c
}

func wantMutationError(t *testing.T, err error) {
	t.Helper()
	var me *Error
	if err == nil {
		t.Fatal("got no error, want *mutate.Error")
	}
	if !errors.As(err, &me) {
		t.Fatalf("got %T %v, want *mutate.Error", err, err)
	}
}
