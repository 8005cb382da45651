package h1server

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"
)

// FuzzServe sends random bytes on a connection: the server must not panic, and must
// answer or close within its timeouts.
func FuzzServe(f *testing.F) {
	for _, tc := range differentialCases {
		f.Add([]byte(tc.raw))
	}
	for _, s := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /flush HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flush":
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
		case "/panic":
			panic(http.ErrAbortHandler)
		case "/hijack":
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-T")
		io.WriteString(w, "ok")
		w.Header().Set("X-T", "1")
	})
	h2 := &http.Server{Handler: h, Protocols: new(http.Protocols), IdleTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond}
	h2.Protocols.SetUnencryptedHTTP2(true)
	ts := startServer(f, h, func(s *Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = 100 * time.Millisecond
		s.MaxHeaderBytes = 1 << 10
		s.H2C = h2
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetDeadline(start.Add(5 * time.Second))
		go func() {
			_, _ = c.Write(data)
			// The server sees the end of the input at once, not after its timeouts.
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		_, err = io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the server neither answered nor closed within 5s")
		}
	})
}

// FuzzRequestURI checks the fast path of the request-target parser against
// url.ParseRequestURI.
func FuzzRequestURI(f *testing.F) {
	for _, s := range []string{"/", "/a?b", "/a?", "/a?b?", "//x/y", "/a%20b", "/a#b", "/\x7f", "/caf\xc3\xa9?q=1#f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseRequestURI("GET", s)
		want, werr := url.ParseRequestURI(s)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: error %v, url.ParseRequestURI %v", s, err, werr)
		}
		// DeepEqual: a URL's User is a pointer, equal by what it points to.
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %#v, want %#v", s, got, want)
		}
	})
}
