package h1server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// benchHandler answers as Sluice does for a proxied 17-byte JSON body: the upstream's
// headers copied, a known length.
var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{"17"}
	h["Server"] = []string{"bench"}
	w.WriteHeader(200)
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n\n")
})

const benchRequest = "GET /api/v1/items?id=42 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: wrk\r\nAccept: */*\r\nX-Request-Id: 0123456789abcdef\r\n\r\n"

// keepAliveClient sends requests on one connection and reads the responses: a cheap
// client, so that the server's cost dominates the benchmark.
func keepAliveClient(b *testing.B, addr string, n int, raw string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Error(err)
		return
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	req := []byte(raw)
	for i := 0; i < n; i++ {
		if _, err := c.Write(req); err != nil {
			b.Error(err)
			return
		}
		// The response ends with the 17-byte body; its length is known, so read the
		// head line by line and then the body.
		cl := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Error(err)
				return
			}
			if len(line) <= 2 {
				break
			}
			if len(line) > 16 && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
				cl = 0
				for _, d := range bytes.TrimSpace(line[15:]) {
					cl = cl*10 + int(d-'0')
				}
			}
		}
		if _, err := br.Discard(cl); err != nil {
			b.Error(err)
			return
		}
	}
}

func runSerial(b *testing.B, addr string, raw string) {
	b.ReportAllocs()
	b.ResetTimer()
	keepAliveClient(b, addr, b.N, raw)
}

const benchPost = "POST /api/v1/items HTTP/1.1\r\nHost: bench.example\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"name\":\"item\",\"count\":42}\n"

func BenchmarkServer(b *testing.B) {
	ts := startServer(b, benchHandler)
	b.Run("GET", func(b *testing.B) { runSerial(b, ts.addr, benchRequest) })
	b.Run("POST", func(b *testing.B) { runSerial(b, ts.addr, benchPost) })
}

func BenchmarkNetHTTP(b *testing.B) {
	addr := startNetHTTP(b, benchHandler)
	b.Run("GET", func(b *testing.B) { runSerial(b, addr, benchRequest) })
	b.Run("POST", func(b *testing.B) { runSerial(b, addr, benchPost) })
}

// idleMemory opens n connections to addr, serves one request on each and returns the
// heap and stack in use per connection once they are idle, minus the same measure for
// a listener that only accepts (the client's and the sockets' own memory).
func idleMemory(t *testing.T, addr string, n int, settle time.Duration) (conns []net.Conn, perConn float64) {
	t.Helper()
	measure := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	before := measure()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, benchRequest); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	time.Sleep(settle)
	after := measure()
	return conns, (float64(after) - float64(before)) / float64(n)
}

// TestIdleConnectionMemory compares the memory held per idle keep-alive connection.
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 3,000 connections")
	}
	const n = 1000
	closeAll := func(cs []net.Conn) {
		for _, c := range cs {
			c.Close()
		}
	}
	// Baseline: the client side and the accepted sockets, with no server goroutine.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
			// Answer the one request so the client code path is the same.
			go func(c net.Conn) {
				buf := make([]byte, 512)
				c.Read(buf)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			}(c)
		}
	}()
	cs, base := idleMemory(t, ln.Addr().String(), n, 300*time.Millisecond)
	ln.Close()
	<-accepted
	closeAll(cs)
	closeAll(held)

	lean := startServer(t, benchHandler, func(s *Server) { s.BufferReleaseDelay = 50 * time.Millisecond })
	cs, leanPer := idleMemory(t, lean.addr, n, 300*time.Millisecond)
	closeAll(cs)
	std := startNetHTTP(t, benchHandler)
	cs, stdPer := idleMemory(t, std, n, 300*time.Millisecond)
	closeAll(cs)

	t.Logf("per idle connection, heap+stack in use: baseline (sockets, client) %.0f B; lean %.0f B (%.0f B over the baseline); net/http %.0f B (%.0f B over the baseline)",
		base, leanPer, leanPer-base, stdPer, stdPer-base)
	if leanPer-base > 20<<10 {
		t.Errorf("lean server holds %.0f B per idle connection, want < 20 KiB", leanPer-base)
	}
}
