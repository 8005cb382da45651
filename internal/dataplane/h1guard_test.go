package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// scanResult is what a scanner concluded about a stream.
type scanResult struct {
	bad    int64 // index of the first flagged request, -1 for none
	reason framingViolation
	heads  int64
	state  h1State
}

func (r scanResult) String() string {
	return fmt.Sprintf("bad=%d reason=%d heads=%d state=%d", r.bad, r.reason, r.heads, r.state)
}

// scanInPieces scans stream split after the given sizes (cycled), the rest in one piece.
func scanInPieces(stream []byte, sizes []int) scanResult {
	var s h1Scanner
	for k := 0; len(stream) > 0; k++ {
		n := len(stream)
		if len(sizes) > 0 {
			n = min(n, max(1, sizes[k%len(sizes)]))
		}
		s.scan(stream[:n])
		stream = stream[n:]
	}
	return scanResult{bad: s.bad.Load() - 1, reason: framingViolation(s.reason.Load()), heads: s.heads, state: s.state}
}

func TestH1Scanner(t *testing.T) {
	t.Parallel()
	const get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name   string
		stream string
		bad    int64 // -1: none flagged
		reason framingViolation
		heads  int64
		// pass says the scanner stopped following the stream.
		pass bool
	}{
		{"one GET", get, -1, 0, 1, false},
		{"pipelined GETs with bare LF", "GET / HTTP/1.1\nHost: x\n\n" + get + get, -1, 0, 3, false},
		{"CL then TE", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, violationCLAndTE, 1, true},
		{"TE then CL, odd case", "POST / HTTP/1.1\r\ntRaNsFeR-eNcOdInG: chunked\r\nCONTENT-LENGTH: 0\r\n\r\n", 0, violationCLAndTE, 1, true},
		{"TE with another coding and CL", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\n", 0, violationCLAndTE, 1, true},
		{"CL+TE on HTTP/1.0", "POST / HTTP/1.0\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx", 0, violationCLAndTE, 1, true},
		{"obs-fold SP", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0, violationObsFold, 1, true},
		{"obs-fold HTAB", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 0, violationObsFold, 1, true},
		{"first header line folded", "GET / HTTP/1.1\r\n X: a\r\n\r\n", 0, violationObsFold, 1, true},
		{"second request flagged after a CL body", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" +
			"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 1, violationObsFold, 2, true},
		{"CL body that looks like a bad head", "POST / HTTP/1.1\r\nContent-Length: 49\r\n\r\n" +
			"X: a\r\n b\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n" + get, -1, 0, 2, false},
		{"chunked body that looks like a bad head", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"11;a=\"b;c\"\r\nX: a\r\n b\r\nCL: 1\r\n\r\n0\r\n\r\n" + get, -1, 0, 2, false},
		{"chunked with trailers then CL+TE", "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n" +
			"3\r\nabc\r\nA;ext\r\n0123456789\r\n0\r\nX-T: 1\r\n folded trailer\r\n\r\n" +
			"POST / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 1, violationCLAndTE, 2, true},
		{"CRLF between requests", "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n" + get, -1, 0, 2, false},
		{"HTTP/1.0 ignores TE", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + get, -1, 0, 2, false},
		{"same CL twice", "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length:  2 \r\n\r\nab" + get, -1, 0, 2, false},
		{"header names that only start alike", "GET / HTTP/1.1\r\nContent-Lengthy: 5\r\nTransfer-Encodings: chunked\r\nUpgrades: x\r\n\r\n" + get, -1, 0, 2, false},

		// The scanner stops where it cannot follow; nothing after is flagged.
		{"upgrade", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nX: a\r\n b\r\n", -1, 0, 1, true},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n\x16\x03\x01 \r\n b", -1, 0, 1, true},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\r\n b", -1, 0, 1, true},
		{"two different CLs", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", -1, 0, 1, true},
		{"CL not a number", "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", -1, 0, 1, true},
		{"CL too large", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", -1, 0, 1, true},
		{"unsupported coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -1, 0, 1, true},
		{"two TE fields", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", -1, 0, 1, true},
		{"chunk size not hex", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", -1, 0, 1, true},
		{"chunk size line with bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nhello\r\n0\r\n\r\n", -1, 0, 1, true},
		{"chunk size too long", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\n", -1, 0, 1, true},
		{"chunk data without CRLF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", -1, 0, 1, true},
		{"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", -1, 0, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := []byte(tc.stream)
			want := scanResult{bad: tc.bad, reason: tc.reason, heads: tc.heads}
			// Whole, byte by byte, and in uneven pieces: the outcome is the same.
			for _, sizes := range [][]int{nil, {1}, {2, 3, 7}, {13}} {
				got := scanInPieces(stream, sizes)
				if got.bad != want.bad || got.reason != want.reason || got.heads != want.heads || (got.state == stPass) != tc.pass {
					t.Errorf("pieces %v: %v, want %v, stopped %v", sizes, got, want, tc.pass)
				}
			}
		})
	}
}

// TestGuardConnCountsRequests: the handler's n-th call asks about the n-th request.
func TestGuardConnCountsRequests(t *testing.T) {
	t.Parallel()
	var c guardConn
	c.scan.scan([]byte("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"))
	for i, want := range []framingViolation{violationNone, violationNone, violationCLAndTE, violationCLAndTE} {
		if got := c.next(); got != want {
			t.Errorf("request %d: %v, want %v", i, got, want)
		}
	}
}

// byteSource draws choices from fuzz input, then zeros once it runs out.
type byteSource struct{ b []byte }

func (s *byteSource) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *byteSource) intn(n int) int { return int(s.next()) % n }

// randomCase spells name with letters in a case the input chooses.
func (s *byteSource) randomCase(name string) string {
	b := []byte(name)
	for i, c := range b {
		if s.next()&1 == 1 {
			b[i] = lower(c)
		} else if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// text returns n bytes that may hold CR, LF, SP, HTAB and header-like text: body data.
func (s *byteSource) text(n int) []byte {
	const alphabet = "\r\n \t:;ab-CTLE0123456789"
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[s.intn(len(alphabet))]
	}
	return out
}

// validStream builds from the input a stream of requests that net/http reads in full and
// whose heads have neither obsolete line folding nor Content-Length with
// Transfer-Encoding, and returns it with the number of requests.
func validStream(s *byteSource) ([]byte, int) {
	var b bytes.Buffer
	n := 1 + s.intn(4)
	for range n {
		eol := "\r\n"
		if s.next()&3 == 0 {
			eol = "\n" // net/http takes a bare LF in a head
		}
		v11 := s.next()&7 != 0
		version := "HTTP/1.1"
		if !v11 {
			version = "HTTP/1.0"
		}
		method := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}[s.intn(6)]
		fmt.Fprintf(&b, "%s /p%d?q=%d %s%s", method, s.next(), s.next(), version, eol)
		fmt.Fprintf(&b, "%s: h%s", s.randomCase("host"), eol)
		for range s.intn(4) {
			name := []string{"x-a", "content-type", "accept", "content-lengthx", "x-transfer-encoding", "upgradex"}[s.intn(6)]
			fmt.Fprintf(&b, "%s:%s%s%s", s.randomCase(name), strings.Repeat(" ", s.intn(3)), strings.Repeat("v", s.intn(5)), eol)
		}
		switch body := s.intn(3); {
		case body == 1 || (body == 2 && !v11):
			data := s.text(s.intn(40))
			fmt.Fprintf(&b, "%s:%s%d%s%s%s", s.randomCase("content-length"), strings.Repeat(" ", s.intn(2)), len(data),
				strings.Repeat("\t", s.intn(2)), eol, eol)
			b.Write(data)
		case body == 2:
			fmt.Fprintf(&b, "%s: %s%s%s", s.randomCase("transfer-encoding"), s.randomCase("chunked"), eol, eol)
			for range s.intn(4) {
				data := s.text(1 + s.intn(30))
				fmt.Fprintf(&b, "%x%s\r\n", len(data), []string{"", ";a", ";a=b", `;a="x;y"`}[s.intn(4)])
				b.Write(data)
				b.WriteString("\r\n")
			}
			b.WriteString([]string{"0\r\n", "0;last\r\n", "000\r\n"}[s.intn(3)])
			for range s.intn(3) {
				fmt.Fprintf(&b, "X-Trailer-%d: t\r\n", s.next())
			}
			b.WriteString("\r\n")
		default:
			b.WriteString(eol)
		}
	}
	return b.Bytes(), n
}

// readAll reads every request of stream as net/http does, bodies included.
func readAll(stream []byte) (int, error) {
	br := bufio.NewReaderSize(bytes.NewReader(stream), 64<<10)
	n := 0
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return n, nil
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return n, fmt.Errorf("request %d: %w", n, err)
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return n, fmt.Errorf("request %d body: %w", n, err)
		}
		n++
	}
}

// FuzzH1Scanner feeds request streams to the scanner. Any input: no panic, and the same
// outcome however the stream is cut into reads. Streams built from the input that
// net/http reads in full and that carry no violation: nothing flagged, and the scanner
// still in step at the end (it counted every request and waits for the next).
func FuzzH1Scanner(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c",
	} {
		f.Add([]byte(seed), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		whole := scanInPieces(data, nil)
		if pieces := scanInPieces(data, []int{int(cut%17) + 1, int(cut>>4) + 1}); pieces != whole {
			t.Fatalf("in pieces %v, whole %v", pieces, whole)
		}
		stream, n := validStream(&byteSource{b: data})
		if got, err := readAll(stream); err != nil || got != n {
			t.Fatalf("the generator made a stream net/http does not read (%d of %d requests: %v):\n%q", got, n, err, stream)
		}
		for _, sizes := range [][]int{nil, {int(cut%5) + 1}} {
			if r := scanInPieces(stream, sizes); r.bad != -1 || r.heads != int64(n) || r.state != stStart {
				t.Fatalf("valid stream of %d requests, pieces %v: %v\n%q", n, sizes, r, stream)
			}
		}
	})
}

var scannerBenchStreams = []struct{ name, stream string }{
	{"get", "GET /api/v1/items?page=2&sort=name HTTP/1.1\r\nHost: api.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n" +
		"Accept: application/json, text/plain, */*\r\nAccept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\r\n" +
		"Cookie: session=0123456789abcdef; theme=dark\r\nX-Request-Id: 5f2b8c0e9a7d4e1f\r\n\r\n"},
	{"post-1KiB", "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n" +
		strings.Repeat("x", 1024)},
	{"chunked-4x256", "POST /stream HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strings.Repeat("100;ext=1\r\n"+strings.Repeat("y", 256)+"\r\n", 4) + "0\r\nX-Checksum: abc\r\n\r\n"},
}

func BenchmarkH1Scanner(b *testing.B) {
	for _, bs := range scannerBenchStreams {
		b.Run(bs.name, func(b *testing.B) {
			p := []byte(bs.stream)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			var s h1Scanner
			for b.Loop() {
				s.scan(p)
				if s.state != stStart {
					b.Fatalf("state %d after a whole request", s.state)
				}
			}
		})
	}
}

// TestH1ScannerAllocatesNothing pins the benchmark's zero-allocation property.
func TestH1ScannerAllocatesNothing(t *testing.T) {
	// Not parallel: testing.AllocsPerRun refuses to run beside other tests.
	for _, bs := range scannerBenchStreams {
		p := []byte(bs.stream)
		var s h1Scanner
		if n := testing.AllocsPerRun(100, func() { s.scan(p) }); n != 0 {
			t.Errorf("%s: %v allocations per scan", bs.name, n)
		}
	}
}
