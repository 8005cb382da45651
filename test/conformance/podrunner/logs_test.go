package podrunner

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// The API server proxies pods/{name}/log to the runner's log server; tailLines and
// limitBytes are applied to the container's output file.
func TestServeLogs(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ns_p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ns_p", "c.log"), []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Runner{cfg: Config{Dir: dir}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", r.serveLogs)
	for url, want := range map[string]struct {
		code int
		body string
	}{
		"/containerLogs/ns/p/c":                       {200, "a\nb\nc\n"},
		"/containerLogs/ns/p/c?tailLines=2":           {200, "b\nc\n"},
		"/containerLogs/ns/p/c?tailLines=9":           {200, "a\nb\nc\n"},
		"/containerLogs/ns/p/c?limitBytes=3":          {200, "a\nb"},
		"/containerLogs/ns/p/c?sinceSeconds=5&follow": {200, "a\nb\nc\n"},
		"/containerLogs/ns/p/other":                   {404, ""},
		"/containerLogs/ns/..%2Fx/c":                  {400, ""},
		"/containerLogs/ns/p/c?tailLines=x":           {400, ""},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != want.code || (want.code == 200 && string(body) != want.body) {
			t.Errorf("%s: %d %q, want %d %q", url, rec.Code, body, want.code, want.body)
		}
	}
}
