package h1client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newServer starts an HTTP/1.1 server counting the connections it accepts.
func newServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func newClient(t *testing.T) *Client {
	c := New(Options{})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func do(t *testing.T, c *Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	resp, err := c.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

func TestRequestsAndReuse(t *testing.T) {
	t.Parallel()
	srv, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Len", r.Header.Get("Content-Length"))
		w.Header().Set("X-Te", strings.Join(r.TransferEncoding, ","))
		w.Write(b)
	})
	c := newClient(t)
	host := srv.Listener.Addr().String()
	for _, tc := range []struct {
		name, method, body string
		length             int64
		wantLen, wantTE    string
	}{
		{"get", "GET", "", 0, "", ""},
		{"post sized", "POST", "hello", 5, "5", ""},
		{"post chunked", "POST", "streamed", -1, "", "chunked"},
		{"post empty", "POST", "", 0, "0", ""},
	} {
		var body io.ReadCloser
		if tc.body != "" {
			body = io.NopCloser(strings.NewReader(tc.body))
		}
		req, _ := http.NewRequest(tc.method, "http://"+host+"/x?y=1", body)
		req.ContentLength = tc.length
		req.Host = "example.test"
		resp, got := do(t, c, req)
		if got != tc.body || resp.Header.Get("X-Method") != tc.method || resp.Header.Get("X-Host") != "example.test" ||
			resp.Header.Get("X-Len") != tc.wantLen || resp.Header.Get("X-Te") != tc.wantTE {
			t.Errorf("%s: body %q headers %v", tc.name, got, resp.Header)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for sequential requests, want 1 (keep-alive)", n)
	}
}

func TestTrailersBothWays(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Resp-Trailer")
		w.Write([]byte("body"))
		w.Header().Set("X-Resp-Trailer", "got "+r.Trailer.Get("X-Req-Trailer"))
	})
	c := newClient(t)
	req, _ := http.NewRequest("POST", srv.URL, io.NopCloser(strings.NewReader("data")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Req-Trailer": nil}
	req.Body = &trailerSetter{r: strings.NewReader("data"), tr: req.Trailer}
	resp, body := do(t, c, req)
	if body != "body" || resp.Trailer.Get("X-Resp-Trailer") != "got v1" {
		t.Fatalf("body %q trailer %v", body, resp.Trailer)
	}
}

// trailerSetter fills the trailer value when the body ends, as a server's request does.
type trailerSetter struct {
	r  io.Reader
	tr http.Header
}

func (s *trailerSetter) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.tr.Set("X-Req-Trailer", "v1")
	}
	return n, err
}
func (s *trailerSetter) Close() error { return nil }

func TestInformationalAndHead(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Length", "42")
		w.WriteHeader(200)
		if r.Method != "HEAD" {
			w.Write(make([]byte, 42))
		}
	})
	c := newClient(t)
	var hints []int
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req = req.WithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if h.Get("Link") != "" {
				hints = append(hints, code)
			}
			return nil
		},
	}))
	resp, body := do(t, c, req)
	if resp.StatusCode != 200 || len(body) != 42 || len(hints) != 1 || hints[0] != 103 {
		t.Fatalf("status %d body %d hints %v", resp.StatusCode, len(body), hints)
	}
	req, _ = http.NewRequest("HEAD", srv.URL, nil)
	resp, body = do(t, c, req)
	if resp.ContentLength != 42 || body != "" {
		t.Fatalf("HEAD: length %d body %q", resp.ContentLength, body)
	}
	// The connection must still be usable after a HEAD.
	req, _ = http.NewRequest("GET", srv.URL, nil)
	if _, body = do(t, c, req); len(body) != 42 {
		t.Fatalf("GET after HEAD: %d bytes", len(body))
	}
}

func TestStaleConnectionRetried(t *testing.T) {
	t.Parallel()
	srv, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	c := newClient(t)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	do(t, c, req)
	// The upstream closes its idle keep-alive connections; the pooled one is now dead.
	srv.CloseClientConnections()
	time.Sleep(20 * time.Millisecond)
	req, _ = http.NewRequest("GET", srv.URL, nil)
	if _, body := do(t, c, req); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestCancelUnblocks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	done := make(chan error, 1)
	go func() { _, err := c.RoundTrip(req); done <- err }()
	select {
	case err := <-done:
		if err == nil || ctx.Err() == nil {
			t.Fatalf("RoundTrip = %v, want the context's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTrip did not return after its context was cancelled")
	}
}

func TestLargeBodiesStream(t *testing.T) {
	t.Parallel()
	const size = 16 << 20
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Sum", hex.EncodeToString(h.Sum(nil)))
		io.CopyN(w, zeros{}, n)
	})
	c := newClient(t)
	req, _ := http.NewRequest("PUT", srv.URL, io.NopCloser(io.LimitReader(zeros{}, size)))
	req.ContentLength = -1
	resp, body := do(t, c, req)
	want := sha256.Sum256(make([]byte, size))
	if len(body) != size || resp.Header.Get("X-Sum") != hex.EncodeToString(want[:]) {
		t.Fatalf("got %d bytes", len(body))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestUpgrade(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		conn.Write([]byte("echo " + line))
	})
	c := newClient(t)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.RoundTrip(req.WithContext(ctx))
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	rwc := resp.Body.(io.ReadWriteCloser)
	defer rwc.Close()
	rwc.Write([]byte("hi\n"))
	line, _ := bufio.NewReader(rwc).ReadString('\n')
	if line != "echo hi\n" {
		t.Fatalf("echo %q", line)
	}
}

func TestRejectsInvalidHeaders(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	c := newClient(t)
	for _, h := range []http.Header{{"X-Bad": {"a\r\nInjected: 1"}}, {"Bad Name": {"v"}}, {"X-Nul": {"a\x00b"}}} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header = h
		if _, err := c.RoundTrip(req); err == nil {
			t.Errorf("header %v was sent", h)
		}
	}
}

// TestHeadBeforeBody: the request head reaches the upstream before any body byte exists,
// so an upstream that answers first, and a client that waits for that answer, both work.
func TestHeadBeforeBody(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		// Without full duplex, net/http's server would read the body before answering.
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			w.Write(buf[:n])
			w.(http.Flusher).Flush()
			if err != nil {
				return
			}
		}
	})
	c := newClient(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", srv.URL, pr)
	req.ContentLength = -1
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("RoundTrip with no body sent yet: %v", err)
	}
	defer resp.Body.Close()
	pw.Write([]byte("ping\n"))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}

func TestExpectContinue(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reject" {
			w.WriteHeader(http.StatusExpectationFailed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	c := newClient(t)
	for _, tc := range []struct {
		path   string
		status int
		body   string
		read   bool
	}{
		{"/accept", 200, "payload", true},
		{"/reject", 417, "", false},
	} {
		var read atomic.Bool
		body := &readFlag{r: strings.NewReader("payload"), read: &read}
		req, _ := http.NewRequest("PUT", srv.URL+tc.path, body)
		req.ContentLength = 7
		req.Header.Set("Expect", "100-continue")
		resp, got := do(t, c, req)
		if resp.StatusCode != tc.status || got != tc.body || read.Load() != tc.read {
			t.Errorf("%s: status %d body %q body read %v", tc.path, resp.StatusCode, got, read.Load())
		}
	}
}

type readFlag struct {
	r    io.Reader
	read *atomic.Bool
}

func (f *readFlag) Read(p []byte) (int, error) { f.read.Store(true); return f.r.Read(p) }
func (f *readFlag) Close() error               { return nil }

// TestSizedBodyReuse: an upstream that answers as soon as the declared body has arrived
// must find the connection reusable, however fast its answer.
func TestSizedBodyReuse(t *testing.T) {
	t.Parallel()
	srv, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	c := newClient(t)
	for i := range 50 {
		req, _ := http.NewRequest("POST", srv.URL+"/", io.NopCloser(strings.NewReader("hello world")))
		req.ContentLength = 5 // the body is longer than declared: only 5 bytes go out
		if _, got := do(t, c, req); got != "hello" {
			t.Fatalf("request %d: upstream got %q, want the declared 5 bytes", i, got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 50 sequential sized uploads, want 1", n)
	}
}

// TestBodyReadErrorEndsExchange: when the request body fails midway, the upstream is not
// left waiting for the rest and RoundTrip returns an error promptly.
func TestBodyReadErrorEndsExchange(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err == nil {
			w.Write([]byte("complete body"))
		}
	})
	c := newClient(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", srv.URL, pr)
	req.ContentLength = 100
	go func() {
		pw.Write([]byte("partial"))
		pw.CloseWithError(errors.New("client went away"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := c.RoundTrip(req.WithContext(ctx))
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("RoundTrip succeeded with %q after the body failed", b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("RoundTrip took %v to notice the failed body", d)
	}
}
