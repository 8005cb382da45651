package h1server

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// pathLog records the paths a handler saw.
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

// TestRequestSmugglingRejected mirrors the data plane's smuggling test
// (internal/dataplane/smuggling_test.go) against the server alone: every ambiguous
// framing is refused with 400 (501 for an unknown coding) and the connection closed
// before the handler sees the request; valid requests before it are served.
func TestRequestSmugglingRejected(t *testing.T) {
	t.Parallel()
	log := &pathLog{}
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r.URL.Path)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "upstream")
	}))
	const smuggled = "GET %[1]s/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	const chunkedOK = "POST %[1]s/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"4;name=value;quoted=\"a;b\"\r\nabcd\r\n1a;ext\r\n" + "0123456789abcdefghijklmnop\r\n" +
		"0;last\r\nX-Trailer: 1\r\nX-Other: fake\r\n\r\n"
	const getOK = "GET %[1]s/ok HTTP/1.1\r\nHost: x\r\n\r\n"
	const postOK = "POST %[1]s/post HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\n" +
		"Transfer-Encoding: chunked\r\n folded: x\r\n\r\n"
	for _, tc := range []struct {
		name   string
		stream string
		want   [][]int
		served []string
	}{
		{"two different content-lengths", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd" + smuggled, [][]int{{400}}, nil},
		{"unknown transfer coding", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", [][]int{{400, 501}}, nil},
		{"chunked not last", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", [][]int{{400, 501}}, nil},
		{"space before colon", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nabcd", [][]int{{400}}, nil},
		{"CL then TE", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"TE then CL", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"CL 0 with TE", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"lower-case names", "POST %[1]s/a HTTP/1.1\r\nhost: x\r\ncontent-length: 35\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"odd-case names and value", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTRANSFER-encoding:  Chunked \r\ncOnTeNt-LeNgTh:7\r\n\r\n0\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"TE and CL with bare LF", "POST %[1]s/a HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"CL+TE on HTTP/1.0", "POST %[1]s/a HTTP/1.0\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx" + smuggled, [][]int{{400}}, nil},
		{"obs-fold with a space", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-Long: part one\r\n part two\r\n\r\n", [][]int{{400}}, nil},
		{"obs-fold with a tab", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-Long: part one\r\n\tpart two\r\n\r\n", [][]int{{400}}, nil},
		{"obs-fold hiding a length", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n Content-Length: 35\r\n\r\n" + smuggled, [][]int{{400}}, nil},
		{"first line folded", "GET %[1]s/a HTTP/1.1\r\n Host: x\r\n\r\n", [][]int{{400}}, nil},
		{"bare CR in a value", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", [][]int{{400}}, nil},
		{"bare CR ending a line", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-A: a\r\r\n\r\n", [][]int{{400}}, nil},
		{"NUL in a value", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", [][]int{{400}}, nil},
		{"NUL in a name", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX\x00A: b\r\n\r\n", [][]int{{400}}, nil},
		{"tab before colon", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n", [][]int{{400}}, nil},
		{"no colon", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nX-A b\r\n\r\n", [][]int{{400}}, nil},
		{"two spaces in the request line", "GET  %[1]s/a HTTP/1.1\r\nHost: x\r\n\r\n", [][]int{{400}}, nil},
		{"no version", "GET %[1]s/a\r\nHost: x\r\n\r\n", [][]int{{400}}, nil},
		{"HTTP/2.0 request line", "GET %[1]s/a HTTP/2.0\r\nHost: x\r\n\r\n", [][]int{{505}}, nil},
		{"lower-case version", "GET %[1]s/a http/1.1\r\nHost: x\r\n\r\n", [][]int{{400}}, nil},
		{"bad chunk size", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", [][]int{{200, 400}}, nil},
		{"CL with a sign", "POST %[1]s/a HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", [][]int{{400}}, nil},
		{"two hosts", "GET %[1]s/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", [][]int{{400}}, nil},
		{"no host", "GET %[1]s/a HTTP/1.1\r\n\r\n", [][]int{{400}}, nil},

		{"valid then CL+TE", getOK + "POST %[1]s/bad HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			[][]int{{200}, {400}}, []string{"/ok"}},
		{"valid with a body then obs-fold", postOK + "GET %[1]s/bad HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\t2\r\n\r\n", [][]int{{200}, {400}}, []string{"/post"}},
		{"chunked with extensions and trailers then CL+TE", chunkedOK + getOK +
			"POST %[1]s/bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
			[][]int{{200}, {200}, {400}}, []string{"/chunked", "/ok"}},
		{"OPTIONS * then CL+TE", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" +
			"POST %[1]s/bad HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [][]int{{200}, {400}}, nil},
		{"chunked with extensions and trailers", chunkedOK + getOK, [][]int{{200}, {200}}, []string{"/chunked", "/ok"}},
		{"body that looks like a head", postOK + getOK, [][]int{{200}, {200}}, []string{"/post", "/ok"}},
		{"HTTP/1.0 with TE alone", "GET %[1]s/v10 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + getOK,
			[][]int{{200}, {200}}, []string{"/v10", "/ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := "/" + strings.NewReplacer(" ", "-", "*", "star", "+", "-").Replace(tc.name)
			stream := fmt.Sprintf(tc.stream, prefix)
			c := dial(t, ts.addr)
			if _, err := io.WriteString(c, stream); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			var last *http.Response
			for i, allowed := range tc.want {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if !slices.Contains(allowed, resp.StatusCode) {
					t.Errorf("response %d: status %d, want one of %v", i, resp.StatusCode, allowed)
				}
				last = resp
			}
			if last.StatusCode >= 400 {
				if !last.Close {
					t.Errorf("the refusal does not close the connection")
				}
				if extra, err := http.ReadResponse(br, nil); err == nil {
					t.Errorf("a further response (%d) came back on the connection", extra.StatusCode)
				}
			}
			for _, p := range tc.served {
				if n := log.count(prefix + p); n != 1 {
					t.Errorf("the handler saw %s %d times, want once", p, n)
				}
			}
			for _, p := range []string{"/bad", "/smuggled"} {
				if log.count(prefix+p) != 0 {
					t.Errorf("the handler saw %s", p)
				}
			}
			if tc.want[0][0] >= 400 && log.count(prefix+"/a") != 0 {
				t.Errorf("the handler saw /a")
			}
		})
	}
}

// seenRequest is what a handler saw of a request, for comparing servers.
type seenRequest struct {
	Method, URL, RequestURI, Proto, Host string
	ContentLength                        int64
	TransferEncoding                     []string
	Close                                bool
	Header, Trailer, Body                string
}

func headerString(h http.Header) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q;", k, h[k])
	}
	return b.String()
}

func recordingHandler(out chan<- seenRequest) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seenRequest{Method: r.Method, URL: r.URL.String(), RequestURI: r.RequestURI, Proto: r.Proto, Host: r.Host,
			ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding, Close: r.Close, Header: headerString(r.Header)}
		b, err := io.ReadAll(r.Body)
		s.Body = string(b)
		if err != nil {
			s.Body += " error: " + err.Error()
		}
		s.Trailer = headerString(r.Trailer)
		out <- s
		_, _ = io.WriteString(w, "ok")
	})
}

// differentialCases are requests both servers must treat alike, except where noted.
var differentialCases = []struct {
	name, raw string
	// leanStatus, when set, is the status the lean server must give where net/http
	// differs on purpose (it repairs what a gateway refuses).
	leanStatus int
}{
	{"simple GET", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0},
	{"query and fragment-like", "GET /a/b?x=1&y=%20z#frag HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"escaped path", "GET /a%2Fb/c%20d HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"trailing question mark", "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"two question marks", "GET /a?b? HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"double slash", "GET //host/path HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"absolute form", "GET http://other.example:8080/p?q HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"CONNECT authority", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 0},
	{"non-canonical names", "GET / HTTP/1.1\r\nhost: h\r\nx-lower: a\r\nX-UPPER: b\r\nx-mIxEd-case: c\r\ncontent-type: t\r\n\r\n", 0},
	{"repeated fields", "GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\nX-Empty:\r\n\r\n", 0},
	{"whitespace around values", "GET / HTTP/1.1\r\nHost: h\r\nX-A:   spaced \t \r\nX-B:\tt\r\n\r\n", 0},
	{"bare LF lines", "GET / HTTP/1.1\nHost: h\nX-A: 1\n\n", 0},
	{"non-ASCII value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9\r\n\r\n", 0},
	{"Pragma no-cache", "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n", 0},
	{"content length", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", 0},
	{"same content length twice", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 0},
	{"chunked", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0},
	{"chunked with trailers", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1\r\na\r\n0\r\nX-T: v\r\nX-U: w\r\n\r\n", 0},
	{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", 0},
	{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n", 0},
	{"HTTP/1.0 with TE", "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
	{"connection close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 0},
	{"connection tokens", "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: x\r\n\r\n", 0},
	{"host with port", "GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n", 0},
	{"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 0},
	{"extension method", "PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 0},
	{"expect continue without body", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", 0},

	{"HTTP/2.0 line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 0},
	{"HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 0},
	{"bad version", "GET / HTTX/1.1\r\nHost: h\r\n\r\n", 0},
	{"lower-case method is a token", "get / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"invalid method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"no host", "GET / HTTP/1.1\r\n\r\n", 0},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0},
	{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0},
	{"differing lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0},
	{"bad length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 0},
	{"negative length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 0},
	{"unknown coding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 0},
	{"two codings", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0},
	{"two TE fields", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
	{"bad trailer key", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n", 0},
	{"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n", 0},
	{"control byte in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", 0},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n", 0},
	{"control byte in target", "GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"unsupported expectation", "POST / HTTP/1.1\r\nHost: h\r\nExpect: fancy\r\nContent-Length: 1\r\n\r\nx", 0},
	{"invalid escape", "GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", 0},

	{"CL and TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400},
}

// TestDifferentialAgainstNetHTTP sends the same requests to this server and to net/http's
// and compares the statuses and what the handlers saw.
func TestDifferentialAgainstNetHTTP(t *testing.T) {
	t.Parallel()
	leanSeen := make(chan seenRequest, 1)
	stdSeen := make(chan seenRequest, 1)
	lean := startServer(t, recordingHandler(leanSeen))
	std := startNetHTTP(t, recordingHandler(stdSeen))
	for _, tc := range differentialCases {
		status := func(addr string, seen chan seenRequest) (int, *seenRequest) {
			c := dial(t, addr)
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(c, tc.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			code := 0
			if err == nil {
				code = resp.StatusCode
				_, _ = io.Copy(io.Discard, resp.Body)
			}
			select {
			case s := <-seen:
				return code, &s
			default:
				return code, nil
			}
		}
		lc, ls := status(lean.addr, leanSeen)
		sc, ss := status(std, stdSeen)
		if tc.leanStatus != 0 {
			if lc != tc.leanStatus || ls != nil {
				t.Errorf("%s: lean %d (handler saw %v), want %d without the handler", tc.name, lc, ls != nil, tc.leanStatus)
			}
			continue
		}
		if lc != sc {
			t.Errorf("%s: status lean %d, net/http %d", tc.name, lc, sc)
		}
		if (ls == nil) != (ss == nil) {
			t.Errorf("%s: handler called: lean %v, net/http %v", tc.name, ls != nil, ss != nil)
			continue
		}
		if ls != nil && fmt.Sprintf("%+v", *ls) != fmt.Sprintf("%+v", *ss) {
			t.Errorf("%s: requests differ\nlean:     %+v\nnet/http: %+v", tc.name, *ls, *ss)
		}
	}
}
