package dataplane

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/ir"
)

const (
	bigSize   = 64 << 20
	blockSize = 1 << 20
)

// bigBlock is the 1 MiB of random bytes that large bodies repeat.
var bigBlock = func() []byte {
	b := make([]byte, blockSize)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = r.Read(b)
	return b
}()

// writeBig writes bigSize bytes: one block, then waits for next (bounded), then the rest.
// It returns the SHA-256 of what it wrote.
func writeBig(w io.Writer, flush func(), next <-chan struct{}) (string, error) {
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	for i := 0; i < bigSize/blockSize; i++ {
		if _, err := mw.Write(bigBlock); err != nil {
			return "", err
		}
		if i == 0 {
			if flush != nil {
				flush()
			}
			select {
			case <-next:
			case <-time.After(wait):
				return "", errors.New("the other end never saw the first block: the body is buffered")
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func TestLargeUploadStreams(t *testing.T) {
	t.Parallel()
	firstSeen := make(chan struct{})
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.CopyN(h, r.Body, blockSize); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(firstSeen)
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n+blockSize, h.Sum(nil))
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	pr, pw := io.Pipe()
	sent := make(chan string, 1)
	go func() {
		sum, err := writeBig(pw, nil, firstSeen)
		pw.CloseWithError(err)
		sent <- sum
	}()
	req, _ := http.NewRequest(http.MethodPut, g.URL+"/upload", pr)
	req.ContentLength = bigSize
	c := newClient(t)
	c.Timeout = 60 * time.Second
	resp, body := do(t, c, req)
	sum := recvWithin(t, sent, "the upload")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if want := fmt.Sprintf("%d %s", bigSize, sum); body != want {
		t.Errorf("upstream received %q, client sent %q", body, want)
	}
}

func TestLargeDownloadStreams(t *testing.T) {
	t.Parallel()
	firstSeen := make(chan struct{})
	sent := make(chan string, 1)
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(bigSize))
		sum, err := writeBig(w, func() { _ = http.NewResponseController(w).Flush() }, firstSeen)
		if err != nil {
			sum = err.Error()
		}
		sent <- sum
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	c := newClient(t)
	c.Timeout = 60 * time.Second
	resp, err := c.Get(g.URL + "/download")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != bigSize {
		t.Errorf("Content-Length %d, want %d", resp.ContentLength, bigSize)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 1); err != nil {
		t.Fatalf("first byte: %v", err)
	}
	close(firstSeen)
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("reading the download: %v", err)
	}
	want := recvWithin(t, sent, "the upstream")
	if got := hex.EncodeToString(h.Sum(nil)); n+1 != bigSize || got != want {
		t.Errorf("client got %d bytes with SHA-256 %s; upstream sent %s", n+1, got, want)
	}
}

// TestFlushAtOnce proves that event streams and bodies of unknown length reach the client
// as they are written: the upstream does not write event 2 until the client has event 1.
func TestFlushAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, contentType, client string }{
		{"event-stream", "text/event-stream", "h1"},
		{"event-stream-h2c", "text/event-stream; charset=utf-8", "h2c"},
		{"unknown-length", "application/octet-stream", "h1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				fmt.Fprint(w, "data: 1\n\n")
				_ = http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				case <-time.After(wait):
					return
				}
				fmt.Fprint(w, "data: 2\n\n")
			}))
			g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
			resp, err := clientFor(t, tc.client).Get(g.URL + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			readEvent := func() string {
				var ev strings.Builder
				for {
					line, err := br.ReadString('\n')
					ev.WriteString(line)
					if err != nil || line == "\n" {
						return ev.String()
					}
				}
			}
			if ev := readEvent(); ev != "data: 1\n\n" {
				t.Fatalf("first event %q", ev)
			}
			close(release)
			if ev := readEvent(); ev != "data: 2\n\n" {
				t.Fatalf("second event %q", ev)
			}
		})
	}
}

func TestTrailers(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Resp-Trailer")
		w.Header().Set("X-Got-Req-Trailer", r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set("X-Got-Te", r.Header.Get("Te"))
		fmt.Fprint(w, "body")
		w.Header().Set("X-Resp-Trailer", "declared")
		w.Header().Set(http.TrailerPrefix+"X-Late-Trailer", "undeclared")
	})
	for _, client := range []string{"h1", "h2c"} {
		for _, upstream := range []string{"h1", "h2c"} {
			t.Run(client+"-to-"+upstream, func(t *testing.T) {
				t.Parallel()
				var b *ir.Backend
				if upstream == "h2c" {
					b = backendOf(t, "b", newH2CBackend(t, handler))
					b.Protocol = ir.UpstreamH2C
				} else {
					b = backendOf(t, "b", newBackend(t, handler))
				}
				g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
				req, _ := http.NewRequest(http.MethodPost, g.URL+"/", io.NopCloser(strings.NewReader("request body")))
				req.ContentLength = -1
				req.Header.Set("Te", "trailers")
				req.Trailer = http.Header{"X-Req-Trailer": {"from-client"}}
				resp, body := do(t, clientFor(t, client), req)
				if resp.StatusCode != http.StatusOK || body != "body" {
					t.Fatalf("got %d %q", resp.StatusCode, body)
				}
				if got := resp.Header.Get("X-Got-Req-Trailer"); got != "from-client" {
					t.Errorf("upstream got request trailer %q", got)
				}
				if got := resp.Header.Get("X-Got-Te"); got != "trailers" {
					t.Errorf("upstream got Te %q", got)
				}
				if got := resp.Trailer.Get("X-Resp-Trailer"); got != "declared" {
					t.Errorf("client got response trailer %q (trailers %v)", got, resp.Trailer)
				}
				if got := resp.Trailer.Get("X-Late-Trailer"); got != "undeclared" {
					t.Errorf("client got undeclared response trailer %q (trailers %v)", got, resp.Trailer)
				}
			})
		}
	}
}

func TestEarlyHints(t *testing.T) {
	t.Parallel()
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		fmt.Fprint(w, "final")
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	for _, client := range []string{"h1", "h2c"} {
		t.Run(client, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var codes []int
			var links []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				codes = append(codes, code)
				links = append(links, h.Get("Link"))
				return nil
			}}
			req, _ := http.NewRequest(http.MethodGet, g.URL+"/", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			resp, body := do(t, clientFor(t, client), req)
			if resp.StatusCode != http.StatusOK || body != "final" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(codes) != 1 || codes[0] != http.StatusEarlyHints || links[0] != "</style.css>; rel=preload; as=style" {
				t.Errorf("1xx seen by the client: codes %v links %q", codes, links)
			}
			if resp.Header.Get("Link") != "" {
				t.Errorf("final response carries the hint's Link header")
			}
		})
	}
}

// upgradeBackend switches to protocol "echo" and echoes bytes until the peer closes.
func upgradeBackend(t *testing.T, gotHeaders chan<- http.Header) *httptest.Server {
	return newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeaders <- r.Header.Clone()
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(wait))
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Upstream: yes\r\n\r\n")
		if brw.Flush() != nil {
			return
		}
		_, _ = io.Copy(conn, brw)
	}))
}

func TestUpgrade(t *testing.T) {
	t.Parallel()
	gotHeaders := make(chan http.Header, 1)
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", upgradeBackend(t, gotHeaders)))))
	conn := dialGateway(t, g)
	_, err := io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\nearly")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	h := recvWithin(t, gotHeaders, "the upstream's request")
	if h.Get("Connection") != "Upgrade" || h.Get("Upgrade") != "echo" {
		t.Errorf("upstream got Connection %q Upgrade %q", h.Get("Connection"), h.Get("Upgrade"))
	}
	// Bytes sent right after the request, then more in both directions.
	for _, msg := range []string{"", "ping", strings.Repeat("x", 100<<10)} {
		if msg != "" {
			if _, err := io.WriteString(conn, msg); err != nil {
				t.Fatal(err)
			}
		} else {
			msg = "early"
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
		if string(got) != msg {
			t.Fatalf("echo %q..., want %q...", got[:min(len(got), 10)], msg[:min(len(msg), 10)])
		}
	}
}

// TestFullDuplex: the upstream echoes each line of the upload as it reads it, and the client
// gets each echo before it sends the next line.
func TestFullDuplex(t *testing.T) {
	t.Parallel()
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				_, _ = io.WriteString(w, "echo "+line)
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	for _, proto := range []string{"h1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe()
			defer pw.Close()
			// The client's RoundTrip does not return before its body ends, even on timeout:
			// end the body when the wait runs out.
			stop := time.AfterFunc(wait, func() { pw.CloseWithError(errors.New("test timed out")) })
			defer stop.Stop()
			req, _ := http.NewRequest(http.MethodPost, g.URL+"/duplex", pr)
			resp, err := clientFor(t, proto).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for i := range 3 {
				msg := fmt.Sprintf("line %d\n", i)
				if _, err := io.WriteString(pw, msg); err != nil {
					t.Fatal(err)
				}
				got, err := br.ReadString('\n')
				if err != nil || got != "echo "+msg {
					t.Fatalf("got %q, %v; want the echo of %q", got, err, msg)
				}
			}
			pw.Close()
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("after the upload: %q, %v", rest, err)
			}
		})
	}
}

func TestHeadAndExpectContinue(t *testing.T) {
	t.Parallel()
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "1234")
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d bytes, expect %q", n, r.Header.Get("Expect"))
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	c := newClient(t)
	c.Transport.(*http.Transport).ExpectContinueTimeout = wait
	req, _ := http.NewRequest(http.MethodHead, g.URL+"/", nil)
	resp, body := do(t, c, req)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 1234 || body != "" {
		t.Errorf("HEAD: %d, length %d, body %q", resp.StatusCode, resp.ContentLength, body)
	}
	// With a long ExpectContinueTimeout the client sends its body only after a 100
	// Continue, so the request completing proves the exchange went through.
	req, _ = http.NewRequest(http.MethodPut, g.URL+"/", strings.NewReader("twelve bytes"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, body = do(t, c, req)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "got 12 bytes") {
		t.Errorf("Expect: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > wait/2 {
		t.Errorf("Expect: 100-continue took %v", d)
	}
}
