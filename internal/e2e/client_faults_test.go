package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A client that opens more HTTP/2 streams than the limit (100 by default) on one h2c
// connection: the streams within the limit are served, the ones beyond it are reset
// without reaching the upstream, and the connection stays usable.
func TestHTTP2StreamLimitEnforced(t *testing.T) {
	t.Parallel()
	const limit, extra = 100, 5
	var arrived atomic.Int32
	release := make(chan struct{})
	up := newUpstream(t, "up", func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(waitFor):
		}
		_, _ = io.WriteString(w, "ok")
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
	))
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.port), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * waitFor))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Read the server's SETTINGS and acknowledge them, so that the limit is in force
	// (before the acknowledgement a server may refuse extra streams as a race).
	for acked := false; !acked; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if v, _ := sf.Value(http2.SettingMaxConcurrentStreams); v != limit {
				t.Fatalf("server advertises %d concurrent streams, want %d", v, limit)
			}
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			acked = true
		}
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	open := func(id uint32) {
		hb.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a.example.com"}, {":path", "/s"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range limit {
		open(uint32(2*i + 1))
	}
	eventually(t, "the streams within the limit to reach the upstream", func() bool { return arrived.Load() == limit })
	for i := range extra {
		open(uint32(2*(limit+i) + 1))
	}
	// Every stream beyond the limit is reset; nothing else comes back while the upstream
	// holds the others.
	reset := map[uint32]http2.ErrCode{}
	for len(reset) < extra {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the extra streams to be reset (got %v): %v", reset, err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			reset[f.StreamID] = f.ErrCode
		case *http2.HeadersFrame:
			t.Fatalf("stream %d answered while the upstream holds every request", f.StreamID)
		}
	}
	for id, code := range reset {
		if id <= 2*limit {
			t.Errorf("stream %d, within the limit, was reset (%v)", id, code)
		}
		if code != http2.ErrCodeRefusedStream && code != http2.ErrCodeProtocol {
			t.Errorf("stream %d reset with %v, want REFUSED_STREAM or PROTOCOL_ERROR", id, code)
		}
	}
	if n := arrived.Load(); n != limit {
		t.Errorf("the upstream got %d requests, want the %d within the limit", n, limit)
	}
	// The held streams complete once the upstream answers.
	close(release)
	done := map[uint32]bool{}
	for len(done) < limit {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d of %d streams ended: %v", len(done), limit, err)
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				done[f.StreamID] = true
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				done[f.StreamID] = true
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset (%v) instead of answered", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("the server went away: %v", f.ErrCode)
		}
	}
}
