package dataplane

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// rawBackend accepts connections, reads one request from each and hands the connection to
// serve, which must not block longer than the test's wait.
func rawBackend(t *testing.T, name string, serve func(c net.Conn)) *ir.Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(wait))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return &ir.Backend{Name: name, Protocol: ir.UpstreamHTTP1, Endpoints: []ir.Endpoint{endpointOf(t, ln.Addr())}}
}

// stallingBackend sends nothing until the request is cancelled.
func stallingBackend(t *testing.T) *ir.Backend {
	return backendOf(t, "stall", newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(wait):
		}
	})))
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	refused := &ir.Backend{Name: "refused", Protocol: ir.UpstreamHTTP1,
		Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: freePort(t)}}}
	resetHeaders := rawBackend(t, "reset-headers", func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Ty")
	})
	garbage := rawBackend(t, "garbage", func(c net.Conn) {
		_, _ = io.WriteString(c, "NOT HTTP AT ALL\r\n\r\n")
	})
	reqTimeout := prefixRoute("request-timeout", "/", stallingBackend(t))
	reqTimeout.RequestTimeout = 100 * time.Millisecond
	backendTimeout := prefixRoute("backend-timeout", "/", stallingBackend(t))
	backendTimeout.RequestTimeout = time.Minute
	backendTimeout.BackendTimeout = 100 * time.Millisecond
	g := startGateway(t, Options{}, &ir.Config{Ports: []*ir.Port{httpPort(listener("l", "",
		vhostOf("refused", prefixRoute("refused", "/", refused)),
		vhostOf("reset-headers", prefixRoute("reset-headers", "/", resetHeaders)),
		vhostOf("garbage", prefixRoute("garbage", "/", garbage)),
		vhostOf("request-timeout", reqTimeout),
		vhostOf("backend-timeout", backendTimeout),
	))}})
	c := newClient(t)
	tests := []struct {
		host     string
		wantCode int
		wantBody string
	}{
		{"refused", 503, "upstream connect error\n"},
		{"reset-headers", 502, "upstream connection error\n"},
		{"garbage", 502, "upstream connection error\n"},
		{"request-timeout", 504, "upstream request timeout\n"},
		{"backend-timeout", 504, "upstream request timeout\n"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			resp, body := get(t, c, g.URL, tc.host, "/")
			if resp.StatusCode != tc.wantCode || body != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantCode, tc.wantBody)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestResetAfterHeaders: once the headers are out, a failing upstream must surface as a
// broken response, never as a clean (truncated) end of body.
func TestResetAfterHeaders(t *testing.T) {
	t.Parallel()
	// More than the server's write buffer, so that the headers do leave the gateway.
	partial := "partial" + strings.Repeat("x", 64<<10)
	withLength := rawBackend(t, "length", func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+partial)
	})
	chunked := rawBackend(t, "chunked", func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n")
	})
	stallBody := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "partial")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(wait):
		}
	}))
	timeout := prefixRoute("timeout", "/", backendOf(t, "stall-body", stallBody))
	timeout.RequestTimeout = 200 * time.Millisecond
	g := startGateway(t, Options{}, &ir.Config{Ports: []*ir.Port{httpPort(listener("l", "",
		vhostOf("length", prefixRoute("length", "/", withLength)),
		vhostOf("chunked", prefixRoute("chunked", "/", chunked)),
		vhostOf("timeout", timeout),
	))}})
	for _, host := range []string{"length", "chunked", "timeout"} {
		for _, proto := range []string{"h1", "h2c"} {
			t.Run(host+"/"+proto, func(t *testing.T) {
				t.Parallel()
				req, _ := http.NewRequest(http.MethodGet, g.URL+"/", nil)
				req.Host = host
				resp, err := clientFor(t, proto).Do(req)
				if err != nil {
					t.Fatalf("headers should arrive: %v", err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				body, err := io.ReadAll(resp.Body)
				if err == nil {
					t.Fatalf("clean end of body after %q: the client cannot tell it is truncated", body)
				}
				if !strings.HasPrefix(partial, string(body)) {
					t.Errorf("body %q", body)
				}
			})
		}
	}
}

func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
	c := newClient(t)
	for _, tc := range []struct {
		size int
		want int
	}{
		{50 << 10, http.StatusOK},
		{70 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{200 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		req, _ := http.NewRequest(http.MethodGet, g.URL+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("a", tc.size))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%d bytes of header: %v", tc.size, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d bytes of header: status %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	const limit = 300 * time.Millisecond
	g := startGateway(t, Options{Limits: Limits{ReadHeaderTimeout: limit}}, simpleConfig(prefixRoute("r", "/", b)))
	conn := dialGateway(t, g)
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /slow HT"); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(conn) // returns when the gateway closes the connection
	d := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the gateway kept the connection open for %v", d)
	}
	if d < limit-50*time.Millisecond || d > limit+2*time.Second {
		t.Errorf("connection closed after %v, want about %v", d, limit)
	}
}
