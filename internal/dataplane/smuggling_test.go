package dataplane

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// pathLog records the paths a backend or a processor saw.
type pathLog struct {
	mu   sync.Mutex
	seen map[string]int
}

func (l *pathLog) add(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]int{}
	}
	l.seen[p]++
}

func (l *pathLog) count(p string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[p]
}

// smugglingGateway serves "/" from a backend and runs a pre-routing processor, each
// recording the paths it saw, so that a test can tell whether a request got past the
// framing checks.
func smugglingGateway(t *testing.T, cfg func(*ir.Listener) *ir.Config) (g *testGateway, upstream, processor *pathLog) {
	t.Helper()
	upstream, processor = &pathLog{}, &pathLog{}
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.add(r.URL.Path)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "upstream")
	}))
	pre := &testFilter{request: func(ex *filter.Exchange) *filter.LocalReply {
		processor.add(ex.Request.URL.Path)
		return nil
	}}
	l := listener("l", "", vhostOf("", prefixRoute("r", "/", backendOf(t, "b", up))))
	l.PreRouting = &ir.ExtProc{Policy: "pre"}
	if cfg == nil {
		cfg = func(l *ir.Listener) *ir.Config { return &ir.Config{Ports: []*ir.Port{httpPort(l)}} }
	}
	return filterGateway(t, map[string]*testFilter{"pre": pre}, cfg(l)), upstream, processor
}

// TestRequestSmugglingRejected sends requests whose framing is ambiguous, alone or after
// valid requests on the same connection. Each must be refused with 400 (or 501 for an
// unknown transfer coding) and the connection closed before the request reaches a
// processor or the upstream, so that no byte of its body can be taken for a second
// request; the valid requests before it are served.
//
// net/http itself refuses differing lengths, unknown codings and malformed names. It
// accepts two forms that RFC 9112 lets a server repair and Envoy refuses: Content-Length
// together with Transfer-Encoding (the length is dropped) and obsolete line folding
// (unfolded into spaces); the connection scanner (h1guard.go) makes the handler refuse
// those.
func TestRequestSmugglingRejected(t *testing.T) {
	t.Parallel()
	g, upstream, processor := smugglingGateway(t, nil)
	// Each case's paths start with its own prefix, %[1]s, so that cases run in parallel
	// against one gateway.
	const smuggled = "GET %[1]s/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	const chunkedOK = "POST %[1]s/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"4;name=value;quoted=\"a;b\"\r\nabcd\r\n1a;ext\r\n" + "0123456789abcdefghijklmnop\r\n" +
		"0;last\r\nX-Trailer: 1\r\nX-Other: fake\r\n\r\n"
	const getOK = "GET %[1]s/ok HTTP/1.1\r\nHost: x\r\n\r\n"
	const postOK = "POST %[1]s/post HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\n" +
		"Transfer-Encoding: chunked\r\n folded: x\r\n\r\n" // body bytes that look like a head
	for _, tc := range []struct {
		name   string
		stream string
		// want lists, per response expected in order, the statuses allowed.
		want [][]int
		// served are paths the upstream must see; every other path of the case must not
		// reach the processor or the upstream.
		served []string
	}{
		// Refused by net/http.
		{"two different content-lengths", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd" + smuggled,
			[][]int{{400}}, nil},
		{"unknown transfer coding", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", [][]int{{400, 501}}, nil},
		{"chunked not last", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", [][]int{{400, 501}}, nil},
		{"space before colon", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nabcd", [][]int{{400}}, nil},

		// Refused by the scanner: Content-Length and Transfer-Encoding together.
		{"CL then TE", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			[][]int{{400}}, nil},
		{"TE then CL", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled,
			[][]int{{400}}, nil},
		{"CL 0 with TE", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"0\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"lower-case names", "POST %[1]s/a HTTP/1.1\r\nhost: x\r\ncontent-length: 35\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			[][]int{{400}}, nil},
		{"odd-case names and value", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTRANSFER-encoding:  Chunked \r\ncOnTeNt-LeNgTh:7\r\n\r\n0\r\n\r\n" + smuggled,
			[][]int{{400}}, nil},
		{"TE and CL with bare LF", "POST %[1]s/a HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n" + smuggled,
			[][]int{{400}}, nil},

		// Refused by the scanner: obsolete line folding.
		{"obs-fold with a space", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-Long: part one\r\n part two\r\n\r\n", [][]int{{400}}, nil},
		{"obs-fold with a tab", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-Long: part one\r\n\tpart two\r\n\r\n", [][]int{{400}}, nil},
		{"obs-fold hiding a length", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n Content-Length: 35\r\n\r\n" + smuggled, [][]int{{400}}, nil},

		// Pipelined: the valid requests before the refused one are served.
		{"valid then CL+TE", getOK + "POST %[1]s/bad HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			[][]int{{200}, {400}}, []string{"/ok"}},
		{"valid with a body then obs-fold", postOK + "GET %[1]s/bad HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\t2\r\n\r\n",
			[][]int{{200}, {400}}, []string{"/post"}},
		{"chunked with extensions and trailers then CL+TE", chunkedOK + getOK +
			"POST %[1]s/bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
			[][]int{{200}, {200}, {400}}, []string{"/chunked", "/ok"}},
		{"OPTIONS * then CL+TE", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" +
			"POST %[1]s/bad HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			[][]int{{200}, {400}}, nil},

		// Legitimate framing passes.
		{"chunked with extensions and trailers", chunkedOK + getOK, [][]int{{200}, {200}}, []string{"/chunked", "/ok"}},
		{"body that looks like a head", postOK + getOK, [][]int{{200}, {200}}, []string{"/post", "/ok"}},
		{"HTTP/1.0 with TE alone", "GET %[1]s/v10 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + getOK,
			[][]int{{200}, {200}}, []string{"/v10", "/ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := "/" + strings.NewReplacer(" ", "-", "*", "star", "+", "-").Replace(tc.name)
			stream := fmt.Sprintf(tc.stream, prefix)
			conn := dialGateway(t, g)
			if _, err := io.WriteString(conn, stream); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			var last *http.Response
			for i, allowed := range tc.want {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if !slices.Contains(allowed, resp.StatusCode) {
					t.Errorf("response %d: status %d, want one of %v", i, resp.StatusCode, allowed)
				}
				last = resp
			}
			if last.StatusCode >= 400 {
				if !last.Close {
					t.Errorf("the refusal does not close the connection")
				}
				// Nothing else may come back: a further answer would mean that bytes
				// after the refused request were served.
				if extra, err := http.ReadResponse(br, nil); err == nil {
					t.Errorf("a further response (%d) came back on the connection", extra.StatusCode)
				}
			}
			for _, p := range tc.served {
				if n := upstream.count(prefix + p); n != 1 {
					t.Errorf("the upstream saw %s %d times, want once", p, n)
				}
			}
			for _, p := range []string{"/a", "/bad", "/smuggled"} {
				if n := upstream.count(prefix + p); n != 0 {
					t.Errorf("the upstream saw %s", p)
				}
				if n := processor.count(prefix + p); n != 0 {
					t.Errorf("the processor saw %s", p)
				}
			}
		})
	}
}

// TestRequestSmugglingRejectedOverTLS: the scanner sees the plaintext of HTTP/1.1 over
// TLS, whether negotiated by ALPN or by its absence; HTTP/2 (ALPN h2) is served as before.
func TestRequestSmugglingRejectedOverTLS(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t, "tls.test")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cert)
	g, upstream, _ := smugglingGateway(t, func(l *ir.Listener) *ir.Config {
		l.Certificates = []ir.Certificate{{Name: "default/tls", CertPEM: cert, KeyPEM: key}}
		return &ir.Config{Ports: []*ir.Port{{Protocol: ir.ProtocolHTTPS, Listeners: []*ir.Listener{l}}}}
	})
	addr := "127.0.0.1:" + strconv.Itoa(int(g.Port))
	for _, alpn := range [][]string{{"http/1.1"}, nil, {"h2", "http/1.1"}} {
		t.Run(fmt.Sprint(alpn), func(t *testing.T) {
			t.Parallel()
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: wait}, Config: &tls.Config{ServerName: "tls.test", RootCAs: roots, NextProtos: alpn}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conn := c.(*tls.Conn)
			_ = conn.SetDeadline(time.Now().Add(wait))
			if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
				// HTTP/2 frames its requests itself; the TLS tests of protocols_test.go
				// cover it being served.
				return
			}
			p := "/tls-" + strings.Join(alpn, "-")
			stream := "GET " + p + "/ok HTTP/1.1\r\nHost: tls.test\r\n\r\n" +
				"POST " + p + "/bad HTTP/1.1\r\nHost: tls.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
			if _, err := io.WriteString(conn, stream); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			for i, want := range []int{200, 400} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("response %d: status %d, want %d", i, resp.StatusCode, want)
				}
			}
			if upstream.count(p+"/ok") != 1 || upstream.count(p+"/bad") != 0 {
				t.Errorf("the upstream saw /ok %d times and /bad %d times, want 1 and 0", upstream.count(p+"/ok"), upstream.count(p+"/bad"))
			}
		})
	}
}
