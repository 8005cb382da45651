package e2e

import (
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestDynamicMetadataAndAttributesReachSecondProcessor(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	first := newProc(t, "first", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			a := reqHeadersAns(nil)
			dm, err := structpb.NewStruct(map[string]any{"tenant.example": map[string]any{"tenant": "acme", "tier": 2}})
			if err != nil {
				panic(err)
			}
			a.DynamicMetadata = dm
			return a
		}
		return nil
	})
	second := newProc(t, "second", nil)
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("first", first.addr),
		procBackendYAML("second", second.addr),
		policyYAML("first", gwTarget, "PreRouting", "first", ""),
		policyYAML("second", routeTarget("r"), "", "second",
			"requestAttributes: {req_path: request.path, src: source.address}"),
	))
	if r := g.get("a.example.com", "/meta?x=1"); r.Status != 200 {
		t.Fatalf("status %d %s", r.Status, r.Body)
	}
	up.seen(t)
	first.only(t, 2)
	msgs := second.only(t, 2).messages()

	fm := msgs[0].GetMetadataContext().GetFilterMetadata()
	ns := fm["tenant.example"].AsMap()
	if ns["tenant"] != "acme" || ns["tier"] != float64(2) {
		t.Errorf("second processor's metadata_context: %v, want tenant.example {tenant: acme, tier: 2}", fm)
	}
	attrs := msgs[0].GetAttributes()["envoy.filters.http.ext_proc"].AsMap()
	if attrs["req_path"] != "/meta?x=1" {
		t.Errorf("attribute req_path = %v, want /meta?x=1 (Envoy's request.path includes the query)", attrs["req_path"])
	}
	if src, _ := attrs["src"].(string); !strings.HasPrefix(src, "127.0.0.1") {
		t.Errorf("attribute src = %v, want the client's address", attrs["src"])
	}
	// Attributes go with the first message of the request direction only.
	if len(msgs[1].GetAttributes()) != 0 {
		t.Errorf("attributes repeated on %s: %v", kindOf(msgs[1]), msgs[1].GetAttributes())
	}
	// The first processor, with nothing configured, got neither.
	fmsgs := first.all()[0].messages()
	if len(fmsgs[0].GetAttributes()) != 0 || fmsgs[0].GetMetadataContext() != nil {
		t.Errorf("first processor got attributes %v metadata %v", fmsgs[0].GetAttributes(), fmsgs[0].GetMetadataContext())
	}
}
