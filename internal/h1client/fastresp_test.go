package h1client

import (
	"bufio"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestFastResponseMatchesNetHTTP checks that the fast head parser reads every response
// exactly as http.ReadResponse does, or leaves it to it.
func TestFastResponseMatchesNetHTTP(t *testing.T) {
	heads := []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"hello\":\"world\"}",
		"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
		"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 500 Internal Server Error\r\ncontent-length:  3 \r\nx-multi: a\r\nX-Multi: b\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 200 OK\r\nBad Key: a\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 200 OK\r\nX-Ctl: a\x01b\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 200 OK\r\n\r\nbody until close",
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 20x OK\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 200 OK\r\nx-lower-case: v\r\nCONTENT-TYPE: t\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 200 OK\nContent-Length: 1\n\na",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",
		"",
	}
	for i, raw := range heads[:4] {
		// The simple kind must take the fast path.
		req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		br := bufio.NewReader(strings.NewReader(raw))
		br.Peek(1)
		if parseSimpleResponse(br, req) == nil {
			t.Errorf("head %d %q: not parsed by the fast path", i, raw)
		}
	}
	for _, raw := range heads {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(method, "http://x/", nil)
			want, werr := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), req)
			got, gerr := readResponse(bufio.NewReader(strings.NewReader(raw)), req)
			if (werr != nil) != (gerr != nil) {
				t.Errorf("%s %q: error %v, net/http %v", method, raw, gerr, werr)
				continue
			}
			if werr != nil {
				continue
			}
			wb, wberr := io.ReadAll(want.Body)
			gb, gberr := io.ReadAll(got.Body)
			if string(wb) != string(gb) || (wberr != nil) != (gberr != nil) {
				t.Errorf("%s %q: body %q (%v), net/http %q (%v)", method, raw, gb, gberr, wb, wberr)
			}
			if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
				got.ContentLength != want.ContentLength || got.Close != want.Close ||
				!reflect.DeepEqual(got.Header, want.Header) || !reflect.DeepEqual(got.Trailer, want.Trailer) ||
				!reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) || got.Request != req {
				t.Errorf("%s %q:\n got %+v\nwant %+v", method, raw, got, want)
			}
		}
	}
}

func TestFastResponseAllocations(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 15:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: keep-alive\r\n\r\n{\"hello\":\"world\"}"
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	sr := strings.NewReader(raw)
	br := bufio.NewReader(sr)
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		sr.Reset(raw)
		br.Reset(sr)
		resp, err := readResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
	})
	t.Logf("%v allocations", allocs)
	if allocs > 6 {
		t.Errorf("reading a simple response allocates %v times", allocs)
	}
}
