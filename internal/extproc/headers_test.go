package extproc

import (
	"net/http"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// Family 5: set and remove request and response headers.
func TestHeaderMutations(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case m.GetRequestHeaders() != nil:
			return reqHeadersAns(common(hm([]string{"x-remove-me"}, set("x-added", "yes"), set(":path", "/rewritten?q=1")), nil))
		case m.GetResponseHeaders() != nil:
			return respHeadersAns(common(hm([]string{"x-upstream-secret"}, set("x-resp-added", "1")), nil))
		}
		return nil
	}))
	g := newGateway(t, spec(), p, withUpstream(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Secret", "s")
		w.Header().Set("X-Upstream-Kept", "k")
		_, _ = w.Write([]byte("hello"))
	}))
	res := g.do("GET", "/orig", nil, "X-Remove-Me", "1", "X-Kept", "2", "Authorization", "Bearer t")
	if res.Err != nil || res.Status != 200 || res.Body != "hello" {
		t.Fatalf("client got %+v", res)
	}
	up := g.up.seen(t)
	if up.Path != "/rewritten?q=1" || up.Header.Get("X-Added") != "yes" || up.Header.Get("X-Remove-Me") != "" || up.Header.Get("X-Kept") != "2" {
		t.Errorf("upstream saw %+v", up)
	}
	if res.Header.Get("X-Resp-Added") != "1" || res.Header.Get("X-Upstream-Secret") != "" || res.Header.Get("X-Upstream-Kept") != "k" {
		t.Errorf("client headers %v", res.Header)
	}
	g.exchange()
	got := p.received()
	if len(got) != 2 || kindOf(got[0]) != "request_headers" || kindOf(got[1]) != "response_headers" {
		t.Fatalf("processor got %v", p.kinds())
	}
	rh := got[0].GetRequestHeaders()
	if !rh.GetEndOfStream() {
		t.Error("GET headers must have end_of_stream")
	}
	for k, want := range map[string]string{":method": "GET", ":path": "/orig", ":scheme": "http", "x-kept": "2", "authorization": "Bearer t"} {
		if v, _ := headerOf(rh.GetHeaders(), k); v != want {
			t.Errorf("processor saw %s=%q, want %q", k, v, want)
		}
	}
	if v, _ := headerOf(got[1].GetResponseHeaders().GetHeaders(), ":status"); v != "200" {
		t.Errorf(":status %q", v)
	}
	if got[0].GetProtocolConfig() == nil || got[1].GetProtocolConfig() != nil {
		t.Error("protocol_config must be on the first message only")
	}
	// Graceful close: the processor saw our half-close and was not reset.
	if e := p.end(t); !e.sawEOF {
		t.Errorf("stream end %+v, want half-close", e)
	}
}

// Family 6: routing headers are ignored by default; allowed with clear_route_cache they
// re-route; a host no route serves answers 404.
func TestRoutingHeaders(t *testing.T) {
	t.Parallel()
	routes := map[string]http.HandlerFunc{
		"a.example": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("A")) },
		"b.example": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("B")) },
	}
	for _, tc := range []struct {
		name       string
		allow      bool
		host       string
		clear      bool
		wantStatus int
		wantBody   string
		action     v1alpha1.RouteCacheAction
	}{
		{"blocked by default", false, "b.example", true, 200, "A", ""},
		{"allowed without clear keeps route", true, "b.example", false, 200, "A", ""},
		{"allowed with clear re-routes", true, "b.example", true, 200, "B", ""},
		{"mismatched host", true, "nowhere.example", true, 404, "", ""},
		{"action Retain ignores clear", true, "b.example", true, 200, "A", v1alpha1.RouteCacheRetain},
		{"action Clear re-routes without asking", true, "b.example", false, 200, "B", v1alpha1.RouteCacheClear},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetRequestHeaders() != nil {
					cr := common(hm(nil, set(":authority", tc.host)), nil)
					cr.ClearRouteCache = tc.clear
					return reqHeadersAns(cr)
				}
				return nil
			}))
			s := spec()
			s.RouteCacheAction = tc.action
			if tc.allow {
				s.MutationRules = &mutationRulesAllowRouting
			}
			g := newGateway(t, s, p, withRoutes(routes))
			res := g.do("GET", "/", nil, "Host", "a.example")
			if res.Status != tc.wantStatus || (tc.wantBody != "" && res.Body != tc.wantBody) {
				t.Fatalf("got %d %q, want %d %q", res.Status, res.Body, tc.wantStatus, tc.wantBody)
			}
			g.exchange()
		})
	}
}

// Family 7: non-UTF-8 header values round-trip through raw_value.
func TestNonUTF8HeaderValues(t *testing.T) {
	t.Parallel()
	bin := "caf\xe9\xff"
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if rh := m.GetRequestHeaders(); rh != nil {
			v, _ := headerOf(rh.GetHeaders(), "x-bin")
			return reqHeadersAns(common(hm(nil, set("x-bin-echo", v)), nil))
		}
		return nil
	}))
	g := newGateway(t, spec(), p)
	res := g.do("GET", "/", nil, "X-Bin", bin)
	if res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	if got := g.up.seen(t).Header.Get("X-Bin-Echo"); got != bin {
		t.Errorf("upstream saw %q, want %q", got, bin)
	}
	g.exchange()
}

// Family 8: :status mutation: a valid one changes the status, an invalid one is ignored.
func TestStatusMutation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		set  string
		want int
	}{{"201", 201}, {"404", 404}, {"100", 200}, {"abc", 200}} {
		t.Run(tc.set, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetResponseHeaders() != nil {
					return respHeadersAns(common(hm(nil, set(":status", tc.set)), nil))
				}
				return nil
			}))
			g := newGateway(t, spec(), p)
			res := g.do("GET", "/", nil)
			if res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			g.exchange()
		})
	}
}
