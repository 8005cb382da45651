package h1server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func TestKeepAliveWithNetHTTPClient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		fmt.Fprintf(w, "%s %s %s len=%d body=%s", r.Method, r.URL.Path, r.URL.RawQuery, r.ContentLength, b)
	})}
	done := make(chan error, 1)
	go func() { done <- s.Serve(cl) }()
	defer func() { s.Close(); <-done }()
	c := client(t)
	base := "http://" + ln.Addr().String()
	for i := 0; i < 20; i++ {
		var resp *http.Response
		var err error
		if i%2 == 0 {
			resp, err = c.Get(base + "/get?i=" + strconv.Itoa(i))
		} else {
			resp, err = c.Post(base+"/post", "text/plain", strings.NewReader("hello"))
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("GET /get i=%d len=0 body=", i)
		if i%2 == 1 {
			want = "POST /post  len=5 body=hello"
		}
		if string(b) != want || resp.StatusCode != 200 || resp.ContentLength != int64(len(want)) {
			t.Fatalf("request %d: %d %q (length %d), want %q", i, resp.StatusCode, b, resp.ContentLength, want)
		}
		if resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") == "" {
			t.Errorf("missing Date or Content-Type: %v", resp.Header)
		}
	}
	if n := cl.n.Load(); n != 1 {
		t.Errorf("%d connections for 20 requests, want 1", n)
	}
}

func TestPipelining(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", r.URL.Path, b)
	}))
	raw := "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: x\r\n\r\n"
	_, bodies, _ := exchange(t, ts.addr, raw, 4, "GET")
	want := []string{"/1:", "/2:abc", "/3:de", "/4:"}
	for i := range want {
		if bodies[i] != want[i] {
			t.Errorf("response %d: %q, want %q", i, bodies[i], want[i])
		}
	}
	// Pipelined byte by byte.
	c := dial(t, ts.addr)
	for i := 0; i < len(raw); i++ {
		if _, err := c.Write([]byte{raw[i]}); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	for i := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want[i] {
			t.Errorf("byte by byte, response %d: %q, want %q", i, b, want[i])
		}
	}
}

func TestRequestBodiesAndTrailers(t *testing.T) {
	t.Parallel()
	type seen struct {
		body    string
		trailer http.Header
		cl      int64
		te      []string
		before  http.Header
	}
	got := make(chan seen, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{cl: r.ContentLength, te: r.TransferEncoding, before: r.Trailer.Clone()}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		s.body, s.trailer = string(b), r.Trailer
		got <- s
	}))
	for _, tc := range []struct {
		name, raw, body string
		cl              int64
		trailer         http.Header
		before          http.Header
	}{
		{"length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", "hello world", 11, nil, nil},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", "hello world", -1, nil, nil},
		{"chunked with trailers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, x-other\r\n\r\n" +
			"A\r\n0123456789\r\n0\r\nX-Sum: 45\r\nx-other: a\r\nX-Late: b\r\n\r\n", "0123456789", -1,
			http.Header{"X-Sum": {"45"}, "X-Other": {"a"}, "X-Late": {"b"}}, http.Header{"X-Sum": nil, "X-Other": nil}},
		{"chunked upper-case hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n", "abcdefghijklmnopqrstuvwxyz", -1, nil, nil},
	} {
		resps, _, _ := exchange(t, ts.addr, tc.raw, 1, "POST")
		if resps[0].StatusCode != 200 {
			t.Fatalf("%s: status %d", tc.name, resps[0].StatusCode)
		}
		s := <-got
		if s.body != tc.body || s.cl != tc.cl {
			t.Errorf("%s: body %q length %d, want %q %d", tc.name, s.body, s.cl, tc.body, tc.cl)
		}
		if fmt.Sprint(s.trailer) != fmt.Sprint(tc.trailer) || fmt.Sprint(s.before) != fmt.Sprint(tc.before) {
			t.Errorf("%s: trailer %v (before the body %v), want %v (%v)", tc.name, s.trailer, s.before, tc.trailer, tc.before)
		}
		if tc.cl == -1 && (len(s.te) != 1 || s.te[0] != "chunked") {
			t.Errorf("%s: TransferEncoding %v", tc.name, s.te)
		}
	}
}

func TestExpectContinue(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("first answer: %v %v, want 100", resp, err)
	}
	io.WriteString(c, "body")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "body" || resp.Close {
		t.Errorf("got %d %q close=%v", resp.StatusCode, b, resp.Close)
	}
	// Not read: no 100, the final answer, and the connection closes.
	io.WriteString(c, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 413 || !resp.Close {
		t.Errorf("got %d close=%v, want 413 and close", resp.StatusCode, resp.Close)
	}
	// The net/http client too.
	req, _ := http.NewRequest("POST", "http://"+ts.addr+"/read", strings.NewReader("via client"))
	req.Header.Set("Expect", "100-continue")
	tr := &http.Transport{ExpectContinueTimeout: wait}
	defer tr.CloseIdleConnections()
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "via client" {
		t.Errorf("got %q", b)
	}
}

func TestInformational(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "done")
	}))
	var hints []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, code)
		if h.Get("Link") == "" {
			t.Errorf("103 without its Link header")
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+ts.addr+"/", nil)
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "done" || len(hints) != 1 || hints[0] != 103 || resp.Header.Get("Link") != "" {
		t.Errorf("got %q, 1xx %v, header %v", b, hints, resp.Header)
	}
}

func TestChunkedResponseAndFlush(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "second")
		case "/large":
			w.Write(bytes.Repeat([]byte("x"), 100<<10))
		case "/small":
			io.WriteString(w, "<html>small</html>")
		case "/declared":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "0123456789")
		}
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("streamed response not chunked: %v", resp.TransferEncoding)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first chunk: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Errorf("rest %q", rest)
	}
	for _, tc := range []struct {
		path    string
		length  int64
		chunked bool
		ctype   string
	}{
		{"/large", -1, true, "text/plain; charset=utf-8"},
		{"/small", 18, false, "text/html; charset=utf-8"},
		{"/declared", 10, false, "text/plain; charset=utf-8"},
	} {
		io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.ContentLength != tc.length || (len(resp.TransferEncoding) > 0) != tc.chunked || resp.Header.Get("Content-Type") != tc.ctype {
			t.Errorf("%s: length %d TE %v type %q", tc.path, resp.ContentLength, resp.TransferEncoding, resp.Header.Get("Content-Type"))
		}
		if tc.path == "/large" && len(b) != 100<<10 {
			t.Errorf("large body: %d bytes", len(b))
		}
	}
}

func TestTrailersOut(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		io.WriteString(w, "body")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", "u")
	}))
	resp, err := client(t).Get("http://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Declared") != "d" || resp.Trailer.Get("X-Undeclared") != "u" {
		t.Errorf("got %q trailers %v", b, resp.Trailer)
	}
}

func TestNoBodyResponses(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(204)
			if _, err := w.Write([]byte("x")); err != http.ErrBodyNotAllowed {
				t.Errorf("write in a 204: %v", err)
			}
		case "/304":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(304)
		default:
			io.WriteString(w, "hello")
		}
	}))
	raw := "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + "GET /204 HTTP/1.1\r\nHost: x\r\n\r\n" + "GET /304 HTTP/1.1\r\nHost: x\r\n\r\n" + "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	c := dial(t, ts.addr)
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	for i, method := range []string{"HEAD", "GET", "GET", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		switch i {
		case 0:
			if resp.Header.Get("Content-Length") != "5" || len(b) != 0 {
				t.Errorf("HEAD: %v %q", resp.Header, b)
			}
		case 1:
			if resp.StatusCode != 204 || resp.Header.Get("Content-Length") != "" || resp.Header.Get("Transfer-Encoding") != "" {
				t.Errorf("204: %d %v", resp.StatusCode, resp.Header)
			}
		case 2:
			if resp.StatusCode != 304 || resp.Header.Get("Content-Type") != "" {
				t.Errorf("304: %d %v", resp.StatusCode, resp.Header)
			}
		case 3:
			if string(b) != "hello" {
				t.Errorf("after: %q", b)
			}
		}
	}
}

func TestHTTP10(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flush" {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "b")
	}))
	// Keep-alive asked for and a known length: kept.
	resps, bodies, br := exchange(t, ts.addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /flush HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 2, "GET")
	if resps[0].Proto != "HTTP/1.0" || resps[0].Close || resps[0].Header.Get("Connection") != "keep-alive" || bodies[0] != "b" {
		t.Errorf("first: %s close=%v %v %q", resps[0].Proto, resps[0].Close, resps[0].Header, bodies[0])
	}
	// Flushed: no chunking in HTTP/1.0, the body ends with the connection.
	if len(resps[1].TransferEncoding) != 0 || resps[1].ContentLength != -1 || bodies[1] != "ab" {
		t.Errorf("second: TE %v length %d %q", resps[1].TransferEncoding, resps[1].ContentLength, bodies[1])
	}
	expectClosed(t, br)
	// No keep-alive asked for: closed.
	_, _, br = exchange(t, ts.addr, "GET / HTTP/1.0\r\n\r\n", 1, "GET")
	expectClosed(t, br)
}

func TestConnectionClose(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/server-closes" {
			w.Header().Set("Connection", "close")
		}
		if r.Close != (r.URL.Path == "/client-closes") {
			t.Errorf("%s: Close=%v", r.URL.Path, r.Close)
		}
		io.WriteString(w, "x")
	}))
	for _, path := range []string{"/client-closes", "/server-closes"} {
		hdr := ""
		if path == "/client-closes" {
			hdr = "Connection: close\r\n"
		}
		resps, _, br := exchange(t, ts.addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\n"+hdr+"\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n", 1, "GET")
		if !resps[0].Close {
			t.Errorf("%s: response does not say close", path)
		}
		expectClosed(t, br)
	}
}

func TestHeaderLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, okHandler("ok"), func(s *Server) { s.MaxHeaderBytes = 1 << 10 })
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n"
	resps, _, br := exchange(t, ts.addr, big, 1, "GET")
	if resps[0].StatusCode != 431 {
		t.Errorf("status %d, want 431", resps[0].StatusCode)
	}
	expectClosed(t, br)
	// Under the limit with net/http's slack, over the read buffer: served.
	mid := "GET / HTTP/1.1\r\nHost: x\r\nX-Mid: " + strings.Repeat("a", 4<<10) + "\r\n\r\n"
	resps, _, _ = exchange(t, ts.addr, mid, 1, "GET")
	if resps[0].StatusCode != 200 {
		t.Errorf("status %d, want 200", resps[0].StatusCode)
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	ts := startServer(t, okHandler("ok"), func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
		s.BufferReleaseDelay = 50 * time.Millisecond
	})
	for _, tc := range []struct {
		name, first string
		served      int
	}{
		{"slowloris", "GET / HTTP/1.1\r\nHost: x\r\n", 0},
		{"silent", "", 0},
		{"idle after a request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1},
	} {
		c := dial(t, ts.addr)
		start := time.Now()
		io.WriteString(c, tc.first)
		br := bufio.NewReader(c)
		for i := 0; i < tc.served; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			io.ReadAll(resp.Body)
		}
		if tc.name == "slowloris" {
			// Trickling bytes does not extend the header timeout.
			for i := 0; i < 5; i++ {
				time.Sleep(50 * time.Millisecond)
				io.WriteString(c, "X-A: b\r\n")
			}
		}
		_, err := br.ReadByte()
		if err == nil {
			t.Errorf("%s: got a byte, want the connection closed", tc.name)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: closed after %v", tc.name, d)
		}
	}
}

func TestClientDisconnectCancelsContext(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 2)
	cancelled := make(chan error, 2)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(wait):
			cancelled <- nil
		}
	}))
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
	} {
		c := dial(t, ts.addr)
		io.WriteString(c, raw)
		<-started
		c.Close()
		if err := <-cancelled; err == nil {
			t.Errorf("%q: the context was not cancelled", raw)
		}
	}
}

func TestContextCancelledAfterHandler(t *testing.T) {
	t.Parallel()
	ctxc := make(chan context.Context, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ctxc <- r.Context() }))
	exchange(t, ts.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1, "GET")
	ctx := <-ctxc
	select {
	case <-ctx.Done():
	case <-time.After(wait):
		t.Error("the request context outlived the handler")
	}
	if la, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); !ok || la.String() != ts.addr {
		t.Errorf("LocalAddrContextKey: %v", ctx.Value(http.LocalAddrContextKey))
	}
}

func TestHijack(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		// Echo lines, starting with those sent with the request.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	for _, want := range []string{"early", "late"} {
		if want == "late" {
			io.WriteString(c, "late\n")
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "echo "+want+"\n" {
			t.Errorf("got %q %v", line, err)
		}
	}
}

func TestFullDuplex(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			t.Errorf("EnableFullDuplex: %v", err)
		}
		w.WriteHeader(200)
		rc.Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(bytes.ToUpper(buf[:n]))
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+ts.addr+"/", pr)
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for _, msg := range []string{"ping\n", "pong\n", "done\n"} {
		io.WriteString(pw, msg)
		line, err := br.ReadString('\n')
		if err != nil || line != strings.ToUpper(msg) {
			t.Fatalf("got %q %v, want %q", line, err, strings.ToUpper(msg))
		}
	}
	pw.Close()
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("rest %q", rest)
	}
}

func TestResponseControllerDeadlines(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Errorf("SetReadDeadline: %v", err)
		}
		if err := rc.SetWriteDeadline(time.Now().Add(wait)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		_, err := io.ReadAll(r.Body)
		if err == nil {
			t.Errorf("the body read did not time out")
		}
		w.WriteHeader(400)
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 400 || !resp.Close {
		t.Errorf("%v %v", resp, err)
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	idle := dial(t, ts.addr)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idleBR := bufio.NewReader(idle)
	if _, err := http.ReadResponse(idleBR, nil); err != nil {
		t.Fatal(err)
	}
	active := dial(t, ts.addr)
	io.WriteString(active, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(context.Background()) }()
	// The idle connection is closed at once.
	idleBR.ReadByte()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(active), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Close {
		t.Errorf("response during shutdown does not close the connection")
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown: %v, want the context's error", err)
	}
	close(release)
}

func TestH2CPriorKnowledge(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	})
	h2 := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	ts := startServer(t, h, func(s *Server) { s.H2C = h2 })
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	for i := 0; i < 3; i++ {
		resp, err := (&http.Client{Transport: tr, Timeout: wait}).Get("http://" + ts.addr + "/h2")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0 /h2" {
			t.Errorf("got %q", b)
		}
	}
	// HTTP/1.1 still works on the same port.
	resp, err := client(t).Get("http://" + ts.addr + "/h1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/1.1 /h1" {
		t.Errorf("got %q", b)
	}
	// A request line that starts like the preface is HTTP/1 (and refused).
	resps, _, _ := exchange(t, ts.addr, "PRI * HTTP/1.1\r\nHost: x\r\n\r\n", 1, "GET")
	if resps[0].StatusCode != 200 {
		t.Logf("PRI over HTTP/1.1: %d", resps[0].StatusCode)
	}
	_ = tls.VersionTLS12
}

func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("the cut response read without error")
	}
}

func TestUnreadBodies(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		io.WriteString(w, "x")
	}))
	small := strings.Repeat("s", 1000)
	raw := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + small +
		"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + small + "\r\n0\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
	resps, _, _ := exchange(t, ts.addr, raw, 3, "GET")
	for i, r := range resps {
		if r.StatusCode != 200 || r.Close {
			t.Errorf("response %d: %d close=%v", i, r.StatusCode, r.Close)
		}
	}
	// Too large to drain: the connection closes after the response.
	c := dial(t, ts.addr)
	io.WriteString(c, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
	go func() {
		chunk := bytes.Repeat([]byte("b"), 64<<10)
		for i := 0; i < 150; i++ {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Close {
		t.Errorf("a large unread body keeps the connection")
	}
}

// TestSlowHandlerKeepsItsRequest: the deadlines of the wait for a request (idle, header,
// buffer release) must not cut a long handler's watch or body short.
func TestSlowHandlerKeepsItsRequest(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			t.Errorf("%s: context cancelled: %v", r.URL.Path, r.Context().Err())
		case <-time.After(300 * time.Millisecond):
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s: body: %v", r.URL.Path, err)
		}
		w.Write(b)
	}), func(s *Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = 150 * time.Millisecond
		s.BufferReleaseDelay = 50 * time.Millisecond
	})
	raw := "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
	resps, bodies, br := exchange(t, ts.addr, raw, 1, "POST")
	if resps[0].StatusCode != 200 || bodies[0] != "ab" {
		t.Errorf("first: %d %q", resps[0].StatusCode, bodies[0])
	}
	_ = br
}

// TestWatchedByteIsKept: a request sent while the previous handler runs long enough to
// be watched starts with the byte the watch read.
func TestWatchedByteIsKept(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	proceed := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-proceed
			if r.Context().Err() != nil {
				t.Errorf("a pipelined request cancelled the context")
			}
		}
		io.WriteString(w, r.URL.Path)
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	time.Sleep(10*watchDelay + 20*time.Millisecond) // the watch is reading now
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(20 * time.Millisecond)
	close(proceed)
	br := bufio.NewReader(c)
	for _, want := range []string{"/slow", "/next"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("got %q, want %q", b, want)
		}
	}
}

// TestHijackKeepsWatchedByte: bytes the watch read before a hijack reach the handler.
func TestHijackKeepsWatchedByte(t *testing.T) {
	t.Parallel()
	sent := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-sent
		time.Sleep(20 * time.Millisecond)
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		line, err := brw.ReadString('\n')
		if err != nil {
			t.Errorf("reading after the hijack: %v", err)
		}
		io.WriteString(conn, "got "+line)
	}))
	c := dial(t, ts.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(10*watchDelay + 20*time.Millisecond)
	io.WriteString(c, "tunnel\n")
	close(sent)
	b, _ := io.ReadAll(c)
	if string(b) != "got tunnel\n" {
		t.Errorf("got %q", b)
	}
}

func TestHeadLength(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "twelve bytes")
	}))
	resps, _, _ := exchange(t, ts.addr, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 2, "HEAD")
	for _, r := range resps {
		if r.ContentLength != 12 || r.Close {
			t.Errorf("HEAD: length %d close %v", r.ContentLength, r.Close)
		}
	}
}

func TestShutdownWithH2C(t *testing.T) {
	t.Parallel()
	h := okHandler("ok")
	h2 := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	ts := startServer(t, h, func(s *Server) { s.H2C = h2 })
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: wait}).Get("http://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
