package dataplane

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestIdleKeepAliveClosed: a keep-alive connection left idle is closed after IdleTimeout.
func TestIdleKeepAliveClosed(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{Limits: Limits{IdleTimeout: 200 * time.Millisecond}}, simpleConfig(prefixRoute("r", "/", b)))
	conn := dialGateway(t, g)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	start := time.Now()
	// dialGateway's deadline bounds this read; an idle close makes it return EOF early.
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read returned %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle connection closed after %v, want about 200ms", d)
	}
}

// TestHTTP2StreamLimitAdvertised: the server announces MaxConcurrentStreams in its SETTINGS,
// which is how HTTP/2 bounds concurrent streams per connection.
func TestHTTP2StreamLimitAdvertised(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	for _, limit := range []int{0, 7} {
		g := startGateway(t, Options{Limits: Limits{MaxConcurrentStreams: limit}}, simpleConfig(prefixRoute("r", "/", b)))
		conn := dialGateway(t, g)
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(conn, conn)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		want := uint32(limit)
		if limit == 0 {
			want = 100 // the default
		}
		var got uint32
		for got == 0 {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("reading the server's SETTINGS: %v", err)
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
				if !ok {
					t.Fatal("the server's SETTINGS carry no MAX_CONCURRENT_STREAMS")
				}
				got = v
			}
		}
		if got != want {
			t.Errorf("limit %d: server advertises %d concurrent streams, want %d", limit, got, want)
		}
	}
}
