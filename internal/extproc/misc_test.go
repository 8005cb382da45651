package extproc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/ir"
)

func overrideTimeout(d time.Duration) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(d)}
}

// Family 19: override_message_timeout.
func TestOverrideMessageTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		max       time.Duration
		overrides []time.Duration
		delay     time.Duration // before the real answer
		want      int
	}{
		{"accepted", 3 * time.Second, []time.Duration{2 * time.Second}, 600 * time.Millisecond, 200},
		{"second ignored", 3 * time.Second, []time.Duration{400 * time.Millisecond, 2 * time.Second}, 900 * time.Millisecond, 504},
		{"too small", 3 * time.Second, []time.Duration{time.Microsecond}, 600 * time.Millisecond, 504},
		{"too big", 3 * time.Second, []time.Duration{5 * time.Second}, 600 * time.Millisecond, 504},
		{"no max", 0, []time.Duration{2 * time.Second}, 600 * time.Millisecond, 504},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, func(s extprocv3.ExternalProcessor_ProcessServer) error {
				for {
					m, err := s.Recv()
					if err != nil {
						return nil
					}
					if m.GetRequestHeaders() != nil {
						for _, d := range tc.overrides {
							if err := s.Send(overrideTimeout(d)); err != nil {
								return nil
							}
						}
						select {
						case <-time.After(tc.delay):
						case <-s.Context().Done():
							return nil
						}
					}
					if err := s.Send(empty(m)); err != nil {
						return nil
					}
				}
			})
			sp := spec(timeout(300 * time.Millisecond))
			if tc.max > 0 {
				sp.MaxMessageTimeout = &metav1.Duration{Duration: tc.max}
			}
			g := newGateway(t, sp, p)
			if res := g.do("GET", "/", nil); res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			g.exchange()
		})
	}
}

// Family 33: mode_override allowed, disallowed, outside the allow-list; request header
// mode in an override is ignored.
func TestModeOverride(t *testing.T) {
	t.Parallel()
	streamedResp := &extprocfilterv3.ProcessingMode{ResponseBodyMode: extprocfilterv3.ProcessingMode_STREAMED,
		RequestHeaderMode: extprocfilterv3.ProcessingMode_SKIP}
	for _, tc := range []struct {
		name    string
		allow   bool
		allowed []v1alpha1.ProcessingMode
		at      string
		want    string
	}{
		{"allowed on request headers", true, nil, "request_headers", "[request_headers response_headers response_body]"},
		{"allowed on response headers", true, nil, "response_headers", "[request_headers response_headers response_body]"},
		{"not allowed", false, nil, "response_headers", "[request_headers response_headers]"},
		{"in the allow-list", true, []v1alpha1.ProcessingMode{{ResponseBodyMode: v1alpha1.BodyStreamed}}, "response_headers", "[request_headers response_headers response_body]"},
		{"outside the allow-list", true, []v1alpha1.ProcessingMode{{ResponseBodyMode: v1alpha1.BodyBuffered}}, "response_headers", "[request_headers response_headers]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if kindOf(m) == tc.at {
					a := empty(m)
					a.ModeOverride = streamedResp
					return a
				}
				return nil
			}))
			s := spec()
			opts(s).AllowModeOverride = tc.allow
			opts(s).AllowedOverrideModes = tc.allowed
			g := newGateway(t, s, p)
			if res := g.do("GET", "/", nil); res.Status != 200 || res.Body != "upstream says hi" {
				t.Fatalf("client got %d %q", res.Status, res.Body)
			}
			g.exchange()
			if got := fmt.Sprint(p.kinds()); got != tc.want {
				t.Errorf("processor got %s, want %s", got, tc.want)
			}
		})
	}
}

// Family 25: dynamic metadata is sent and received; ignored in observability mode.
// Family 26: request and response attributes with the first message of each direction.
func TestMetadataAndAttributes(t *testing.T) {
	t.Parallel()
	dm, _ := structpb.NewStruct(map[string]any{"my.ns": map[string]any{"tenant": "t1"}, "loose": "v"})
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			a := empty(m)
			a.DynamicMetadata = dm
			return a
		}
		return nil
	}))
	s := spec(bodies(buffered, none))
	s.RequestAttributes = map[string]string{"path": "request.path", "method": "request.method"}
	s.ResponseAttributes = map[string]string{"code": "response.code"}
	g := newGateway(t, s, p)
	if res := g.do("POST", "/attr?x=1", strings.NewReader("b")); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	ex := g.exchange()
	if v := ex.Metadata()["my.ns"].GetFields()["tenant"].GetStringValue(); v != "t1" {
		t.Errorf("metadata %v", ex.Metadata())
	}
	if v := ex.Metadata()[metadataNamespace].GetFields()["loose"].GetStringValue(); v != "v" {
		t.Errorf("loose metadata %v", ex.Metadata())
	}
	got := p.received()
	ra := got[0].GetAttributes()[attributesKey]
	if ra.GetFields()["path"].GetStringValue() != "/attr?x=1" || ra.GetFields()["method"].GetStringValue() != "POST" {
		t.Errorf("request attributes %v", ra)
	}
	if got[1].GetAttributes() != nil {
		t.Error("attributes repeated on the body message")
	}
	if rsa := got[2].GetAttributes()[attributesKey]; rsa.GetFields()["code"].GetNumberValue() != 200 {
		t.Errorf("response attributes %v", rsa)
	}
	// The metadata received on the request headers is forwarded with the response.
	if got[2].GetMetadataContext().GetFilterMetadata()["my.ns"] == nil {
		t.Errorf("metadata_context %v", got[2].GetMetadataContext())
	}
}

// Family 23: forward rules limit the headers (and trailers) sent.
func TestForwardRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		rules       v1alpha1.ForwardRules
		sent, unset []string
	}{
		{"allow", v1alpha1.ForwardRules{AllowedHeaders: []string{"x-a"}}, []string{"x-a"}, []string{"x-b", "x-c"}},
		{"disallow", v1alpha1.ForwardRules{DisallowedHeaders: []string{"x-b"}}, []string{"x-a", "x-c"}, []string{"x-b"}},
		{"both", v1alpha1.ForwardRules{AllowedHeaders: []string{"re:x-.*"}, DisallowedHeaders: []string{"x-c"}}, []string{"x-a", "x-b"}, []string{"x-c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProc(t, echo)
			s := spec()
			s.ForwardRules = &tc.rules
			g := newGateway(t, s, p)
			if res := g.do("GET", "/", nil, "X-A", "1", "X-B", "2", "X-C", "3"); res.Status != 200 {
				t.Fatalf("status %d", res.Status)
			}
			g.exchange()
			h := p.received()[0].GetRequestHeaders().GetHeaders()
			for _, k := range tc.sent {
				if _, ok := headerOf(h, k); !ok {
					t.Errorf("%s not sent", k)
				}
			}
			for _, k := range tc.unset {
				if _, ok := headerOf(h, k); ok {
					t.Errorf("%s sent", k)
				}
			}
		})
	}
}

// Family 24: a mutation that makes the headers too large fails the request.
func TestHeaderLimits(t *testing.T) {
	t.Parallel()
	p := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			var sets = hm(nil)
			for i := range 200 {
				sets.SetHeaders = append(sets.SetHeaders, set(fmt.Sprintf("x-h-%d", i), strings.Repeat("v", 1024)))
			}
			return reqHeadersAns(common(sets, nil))
		}
		return nil
	}))
	g := newGateway(t, spec(), p)
	if res := g.do("GET", "/", nil); res.Status != 500 {
		t.Fatalf("status %d, want 500", res.Status)
	}
	g.up.none(t)
	g.exchange()
}

// Family 22: a disabled processor does nothing; initial metadata reaches the processor;
// two processors chain, the second seeing the first's changes and metadata.
func TestDisabledInitialMetadataAndChain(t *testing.T) {
	t.Parallel()
	p := newProc(t, echo)
	g := newGateway(t, spec(func(s *v1alpha1.ExtProc) { s.Disabled = true }), p)
	if res := g.do("GET", "/", nil); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g.exchange()
	if n := p.open.Load(); n != 0 {
		t.Errorf("disabled processor got %d streams", n)
	}

	p2 := newProc(t, echo)
	g2 := newGateway(t, spec(func(s *v1alpha1.ExtProc) { s.GRPCInitialMetadata = map[string]string{"x-tenant": "blue"} }), p2)
	if res := g2.do("GET", "/", nil); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g2.exchange()
	p2.mu.Lock()
	md := p2.md[0]
	p2.mu.Unlock()
	if v := md.Get("x-tenant"); len(v) != 1 || v[0] != "blue" {
		t.Errorf("initial metadata %v", md)
	}
}

// Two processors in a chain: each Instance runs in order on the same Exchange.
func TestTwoProcessorsChained(t *testing.T) {
	t.Parallel()
	dm, _ := structpb.NewStruct(map[string]any{"first": map[string]any{"k": "v"}})
	first := newProc(t, answerWith(func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			a := reqHeadersAns(common(hm(nil, set("x-first", "1")), nil))
			a.DynamicMetadata = dm
			return a
		}
		return nil
	}))
	second := newProc(t, echo)
	g := newGateway(t, spec(), first)
	f2, err := g.pool.Build(&ir.ExtProc{Policy: "test/second", Backend: backendOf(second), Spec: spec()})
	if err != nil {
		t.Fatal(err)
	}
	g.fac = chain{g.fac, f2}
	if res := g.do("GET", "/", nil); res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	g.exchange()
	got := second.received()[0]
	if v, _ := headerOf(got.GetRequestHeaders().GetHeaders(), "x-first"); v != "1" {
		t.Error("second processor did not see the first's header")
	}
	if got.GetMetadataContext().GetFilterMetadata()["first"] == nil {
		t.Error("second processor did not get the first's metadata")
	}
	if g.up.seen(t).Header.Get("X-First") != "1" {
		t.Error("upstream missed x-first")
	}
}

// Reloads keep the connection: Build for the same address returns factories on one conn.
func TestPoolSharesConnections(t *testing.T) {
	t.Parallel()
	p := newProc(t, echo)
	pool := NewPool(PoolOptions{})
	defer pool.Close()
	x := &ir.ExtProc{Policy: "a/b", Backend: backendOf(p), Spec: spec()}
	f1, err := pool.Build(x)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := pool.Build(&ir.ExtProc{Policy: "a/c", Backend: backendOf(p), Spec: spec(failOpen)})
	if err != nil {
		t.Fatal(err)
	}
	if len(pool.conns) != 1 || f1.(*factory).client == nil || f2.(*factory).client == nil {
		t.Errorf("%d connections for one address", len(pool.conns))
	}
	// Several endpoints go through one round-robin connection.
	p2 := newProc(t, echo)
	b := backendOf(p)
	b.Endpoints = append(b.Endpoints, backendOf(p2).Endpoints...)
	f3, err := pool.Build(&ir.ExtProc{Policy: "a/d", Backend: b, Spec: spec()})
	if err != nil {
		t.Fatal(err)
	}
	if len(pool.conns) != 2 {
		t.Errorf("%d connections", len(pool.conns))
	}
	g := newGateway(t, spec(), p)
	g.fac = f3
	for range 4 {
		if res := g.do("GET", "/", nil); res.Status != 200 {
			t.Fatalf("status %d", res.Status)
		}
		g.exchange()
	}
	if p.open.Load() == 0 || p2.open.Load() == 0 {
		t.Errorf("streams per endpoint: %d, %d", p.open.Load(), p2.open.Load())
	}
}
