package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	var cfg any
	s := New(reg, func() any { return cfg }, Options{Pprof: true})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 503, "not ready"},
		{"/config", 503, "no configuration"},
		{"/metrics", 200, "sluice_test_total 1"},
		{"/debug/pprof/", 200, "goroutine"},
	} {
		code, body := get(tc.path)
		if code != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.status, tc.body)
		}
	}
	s.SetReady(true)
	cfg = map[string]int{"ports": 1}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz after SetReady = %d %q", code, body)
	}
	if code, body := get("/config"); code != 200 || !strings.Contains(body, `"ports": 1`) {
		t.Errorf("/config = %d %q", code, body)
	}
}

// TestPprofSwitch: the profiler answers only when switched on.
func TestPprofSwitch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		on   bool
		want int
	}{{false, http.StatusNotFound}, {true, http.StatusOK}} {
		s := New(prometheus.NewRegistry(), func() any { return nil }, Options{Pprof: tc.on})
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != tc.want {
				t.Errorf("pprof %v: GET %s = %d, want %d", tc.on, path, rec.Code, tc.want)
			}
		}
	}
}
