package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Upstream faults through the whole gateway (app.Run). Connection refused, a reset before
// or after the headers and timeouts are in internal/dataplane/failures_test.go, slow
// bodies without a processor in internal/dataplane/streaming_test.go (TestFlushAtOnce);
// these add what a user would meet next: whether the gateway keeps serving, processors on
// the path, back-pressure, and upstreams that close keep-alive connections.

// resetUpstream answers with a 1 MiB Content-Length, sends part of it and resets the
// connection (SO_LINGER 0), for requests to /reset; anything else gets "ok".
func resetUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/reset" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
		_, _ = brw.WriteString(strings.Repeat("x", 100<<10))
		_ = brw.Flush()
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// An upstream that resets its connection in the middle of the body: the client gets the
// headers and then a broken body (an error, not a clean short body, and not a hang), with
// or without a processor on the response headers, and the gateway keeps serving.
func TestUpstreamResetMidBody(t *testing.T) {
	t.Parallel()
	up := resetUpstream(t)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			return respHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr("x-proc", "yes"))})
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("plain", "plain.example.com", rule{backend: "up"}),
		routeYAML("proc", "proc.example.com", rule{backend: "up"}),
		backendYAML("up", up.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", routeTarget("proc"), "", "p", ""),
	))
	const rounds = 10
	for _, host := range []string{"plain.example.com", "proc.example.com"} {
		for i := range rounds {
			req, _ := http.NewRequest("GET", g.url("/reset"), nil)
			req.Host = host
			start := time.Now()
			resp, err := g.client.Do(req)
			if err != nil {
				t.Fatalf("%s #%d: the headers should arrive: %v", host, i, err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("%s #%d: status %d", host, i, resp.StatusCode)
			}
			if host == "proc.example.com" && resp.Header.Get("X-Proc") != "yes" {
				t.Errorf("%s: the processor's header is missing: %v", host, resp.Header)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("%s #%d: clean end of body after %d of 1048576 bytes: the client cannot tell it is truncated", host, i, n)
			}
			if n >= 1<<20 {
				t.Errorf("%s #%d: %d bytes, more than the upstream sent", host, i, n)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%s #%d: the broken body took %v to surface", host, i, d)
			}
		}
		// The gateway keeps serving, on new and reused connections alike.
		for i := range rounds {
			if r := g.get(host, "/fine"); r.Status != 200 || r.Body != "ok" {
				t.Fatalf("%s: after the resets, request %d got %d %q", host, i, r.Status, r.Body)
			}
		}
	}
}

// A slow upstream body with a processor on the request and response headers still
// streams: the client gets the first part before the upstream writes the second.
func TestSlowUpstreamBodyStreamsPastProcessor(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, "up", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.WriteString(w, "first\n")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(waitFor):
			return
		}
		_, _ = io.WriteString(w, "second\n")
	})
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			return respHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr("x-proc", "yes"))})
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", ""),
	))
	req, _ := http.NewRequest("GET", g.url("/slow"), nil)
	req.Host = "a.example.com"
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Proc") != "yes" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n') // bounded by the client's timeout
	if err != nil || line != "first\n" {
		t.Fatalf("first part: %q %v (the body is held until the upstream finishes?)", line, err)
	}
	close(release)
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "second\n" {
		t.Fatalf("second part: %q %v", rest, err)
	}
}

// A response larger than the client reads: the gateway holds the upstream back instead
// of buffering. A 256 MiB response is read at a trickle for a while: the heap of the
// whole process (client, gateway, upstream) grows by less than 16 MiB, and the upstream
// is kept far behind the end of its body; then the rest is read and arrives whole.
//
// Not parallel: the heap is measured, which neighbours would disturb.
func TestSlowClientBackPressure(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB; skipped with -short")
	}
	const (
		size      = 256 << 20
		heapBound = 16 << 20
		trickle   = 3 * time.Second
	)
	var written atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		buf := make([]byte, 32<<10)
		for n := 0; n < size; n += len(buf) {
			if _, err := w.Write(buf); err != nil {
				return
			}
			written.Add(int64(len(buf)))
		}
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.Listener.Addr().String()),
	))
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()

	req, _ := http.NewRequest("GET", g.url("/big"), nil)
	req.Host = "a.example.com"
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	// The trickle: 4 KiB every 10 ms (400 KiB/s), sampling the heap as it goes.
	var read int64
	var peak uint64
	buf := make([]byte, 4<<10)
	end := time.Now().Add(trickle)
	for i := 0; time.Now().Before(end); i++ {
		n, err := io.ReadFull(resp.Body, buf)
		read += int64(n)
		if err != nil {
			t.Fatalf("trickle: %v after %d bytes", err, read)
		}
		if i%50 == 0 {
			if h := heap(); h > peak {
				peak = h
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	ahead := written.Load() - read
	grew := int64(peak) - int64(before)
	t.Logf("after %v of trickle: client read %.1f MiB, upstream wrote %.1f MiB (%.1f MiB ahead, in socket buffers and the gateway); heap in use %.1f MiB before, peak %.1f MiB (%+.1f MiB)",
		trickle, mib(uint64(read)), mib(uint64(written.Load())), mib(uint64(ahead)), mib(before), mib(peak), float64(grew)/(1<<20))
	if grew > heapBound {
		t.Errorf("heap in use grew by %.1f MiB while a client read slowly, want under %d MiB: the gateway buffers", float64(grew)/(1<<20), heapBound>>20)
	}
	// Loopback socket buffers on both hops hold some MiB; a gateway that buffered would
	// have let the upstream write everything.
	if ahead > 64<<20 {
		t.Errorf("the upstream got %.1f MiB ahead of the client: not held back", mib(uint64(ahead)))
	}
	// The rest arrives whole.
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || read+n != size {
		t.Fatalf("read %d bytes in all (%v), want %d", read+n, err, size)
	}
}

// Upstreams that close keep-alive connections: the gateway sends the next request over a
// new connection and the client never sees the close.
func TestUpstreamClosesKeepAlive(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/close" {
			// Announces the close: the gateway must not reuse the connection.
			w.Header().Set("Connection", "close")
		}
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
	})
	up := httptest.NewUnstartedServer(handler)
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.Listener.Addr().String()),
	))
	// g.get and g.do fail the test that started the gateway on a transport error; the
	// gateway answers every request here, so that does not happen.
	get := func(t *testing.T, path string) {
		t.Helper()
		if r := g.get("a.example.com", path); r.Status != 200 || r.Body != "GET "+path+" 0" {
			t.Errorf("GET %s: %d %q", path, r.Status, r.Body)
		}
	}
	post := func(t *testing.T, path string) {
		t.Helper()
		if r := g.do("POST", "a.example.com", path, strings.NewReader("hello")); r.Status != 200 || r.Body != "POST "+path+" 5" {
			t.Errorf("POST %s: %d %q", path, r.Status, r.Body)
		}
	}
	get(t, "/one")
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections for one request", n)
	}

	t.Run("silent close, then GET", func(t *testing.T) {
		// The upstream drops its idle connections without a word (as an idle timeout
		// does); the GET right after goes over a new connection.
		up.CloseClientConnections()
		get(t, "/after-silent-close")
	})
	t.Run("Connection: close, then GET and POST", func(t *testing.T) {
		get(t, "/close")
		get(t, "/after-announced-close")
		post(t, "/close")
		post(t, "/after-announced-close")
	})
	t.Run("silent close seen, then POST", func(t *testing.T) {
		// A request with a body cannot be replayed, so the gateway must notice a close
		// that came while the connection sat idle before it picks the connection, as
		// net/http's Transport does.
		get(t, "/warm")
		up.CloseClientConnections()
		time.Sleep(100 * time.Millisecond) // the FIN has arrived long before the request
		post(t, "/after-silent-close")
	})
	t.Run("idle timeout under load", func(t *testing.T) {
		// An upstream that closes connections idle for 20 ms, while requests arrive every
		// 15-25 ms: closes race with requests. GETs must all succeed: the upstream cannot
		// have seen a request sent on a connection it had closed, so it is sent again.
		idle := httptest.NewUnstartedServer(handler)
		idle.Config.IdleTimeout = 20 * time.Millisecond
		idle.Start()
		t.Cleanup(idle.Close)
		g := startGateway(t, docs(gatewayYAML,
			routeYAML("r", "a.example.com", rule{backend: "up"}),
			backendYAML("up", idle.Listener.Addr().String()),
		))
		var wg sync.WaitGroup
		errs := make(chan string, 100)
		for c := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					time.Sleep(time.Duration(15+(i+c)%10) * time.Millisecond)
					req, _ := http.NewRequest("GET", g.url("/idle"), nil)
					req.Host = "a.example.com"
					resp, err := g.client.Do(req)
					if err != nil {
						errs <- err.Error()
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(b) != "GET /idle 0" {
						errs <- fmt.Sprintf("status %d %q", resp.StatusCode, b)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}
