package dataplane

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRequestSmugglingRejected sends requests whose framing is ambiguous. Each must be
// refused with 400 (or 501 for an unknown transfer coding) before anything reaches the
// upstream, so that no byte of the body can be taken upstream for a second request.
//
// Two cases are not here because net/http accepts them in the way RFC 9112 allows, where
// Envoy rejects them: Content-Length together with Transfer-Encoding: chunked (the length
// is dropped and the chunked framing used) and obsolete line folding (unfolded into
// spaces). Sluice re-frames every request it forwards from its own parse (see
// h1client.writeHead), so the upstream cannot read those requests differently.
func TestRequestSmugglingRejected(t *testing.T) {
	t.Parallel()
	var upstreamRequests atomic.Int32
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamRequests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "upstream")
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	smuggled := "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, head, body string
		want             []int
	}{
		{"two different content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n",
			"abcd" + smuggled, []int{400}},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", "0\r\n\r\n", []int{400, 501}},
		{"chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "0\r\n\r\n", []int{400, 501}},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\n", "abcd", []int{400}},
	} {
		before := upstreamRequests.Load()
		conn := dialGateway(t, g)
		if _, err := io.WriteString(conn, tc.head+tc.body); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", tc.name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ok := false
		for _, w := range tc.want {
			ok = ok || resp.StatusCode == w
		}
		if !ok {
			t.Errorf("%s: status %d, want one of %v", tc.name, resp.StatusCode, tc.want)
		}
		// Nothing else may come back on this connection: a second answer would mean the
		// smuggled request was served.
		if extra, _ := http.ReadResponse(br, nil); extra != nil {
			t.Errorf("%s: a second response (%d) came back on the connection", tc.name, extra.StatusCode)
		}
		if tc.want[0] == 400 && resp.StatusCode == 400 && upstreamRequests.Load() != before {
			t.Errorf("%s: the upstream saw a request", tc.name)
		}
		if strings.Contains(tc.body, "/admin") && upstreamRequests.Load()-before > 1 {
			t.Errorf("%s: the upstream saw the smuggled request", tc.name)
		}
	}
}
