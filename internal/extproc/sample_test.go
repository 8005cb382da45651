package extproc

import (
	"net/http"
	"testing"

	"github.com/sluice-gateway/sluice/internal/sampleproc"
)

// The documented sample processor works unchanged: headers added and removed, a body set
// from a response headers answer, and trailers set.
func TestSampleProcessor(t *testing.T) {
	t.Parallel()
	sp := sampleproc.New(sampleproc.Options{})
	p := newProc(t, sp.Process)
	g := newGateway(t, spec(), p, withUpstream(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Instructions", `{"setBody":"replaced","setTrailers":{"x-t":"1"},"addHeaders":{"x-resp":"yes"}}`)
		_, _ = w.Write([]byte(`{"upstream":"body"}`))
	}))
	res := g.do("GET", "/headers", nil, "Host", "www.example.com", "Instructions", `{"addHeaders":{"extproc":"true"},"removeHeaders":["x-gone"]}`, "X-Gone", "1")
	if res.Status != 200 || res.Body != "replaced" || res.Header.Get("X-Resp") != "yes" || res.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("client got %d %q %v", res.Status, res.Body, res.Header)
	}
	if res.Trailer.Get("X-T") != "1" {
		t.Errorf("trailers %v", res.Trailer)
	}
	up := g.up.seen(t)
	if up.Header.Get("Extproc") != "true" || up.Header.Get("X-Gone") != "" || up.Header.Get("Instructions") == "" {
		t.Errorf("upstream saw %v", up.Header)
	}
	g.exchange()
}
