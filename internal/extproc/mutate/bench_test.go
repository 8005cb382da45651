package mutate

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchRequest has the headers of a typical browser request.
func benchRequest() *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://shop.example/api/v1/items?page=2", nil)
	for k, v := range map[string]string{
		"Accept": "application/json", "Accept-Encoding": "gzip, br", "Accept-Language": "en-GB",
		"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Cookie": "session=abc123; theme=dark",
		"X-Request-Id": "7f3c9a52-0b1e-4c8e-9d2a-1f0e6b3c4d5e", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "X-Custom-Tenant": "acme", "Referer": "https://shop.example/",
	} {
		req.Header.Set(k, v)
	}
	return req
}

func BenchmarkRequestHeaders(b *testing.B) {
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		_ = RequestHeaders(req, "https", nil, "")
	}
}

func BenchmarkApplyRequest(b *testing.B) {
	m := sets(opt("x-tenant", "acme"), withAppend(opt("x-trace", "1"), true), opt("authorization", "Basic Zm9v"), opt(":path", "/v2/items?page=2"))
	m.RemoveHeaders = []string{"cookie"}
	rules, _ := CompileRules(nil)
	base := benchRequest()
	// Each iteration needs a fresh request; cloning in batches keeps the timer toggling
	// (which is slow) out of the loop.
	batch := make([]*http.Request, 256)
	i := len(batch)
	b.ReportAllocs()
	for b.Loop() {
		if i == len(batch) {
			b.StopTimer()
			for j := range batch {
				batch[j] = base.Clone(base.Context())
			}
			i = 0
			b.StartTimer()
		}
		if _, err := ApplyRequest(batch[i], m, rules, false); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
