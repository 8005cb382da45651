package dataplane

import (
	"net/http"
	"regexp"
	"slices"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
)

func TestHopByHopRequest(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
	c := newClient(t)
	tests := []struct {
		name   string
		te     string
		wantTE []string
	}{
		{"te-trailers", "trailers", []string{"trailers"}},
		{"te-trailers-among-others", "gzip, trailers", []string{"trailers"}},
		{"te-other", "gzip", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodGet, g.URL+"/", nil)
			req.Header.Set("Connection", "X-Conn-Named, keep-alive")
			req.Header.Set("X-Conn-Named", "drop me")
			req.Header.Set("Keep-Alive", "timeout=5")
			req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
			req.Header.Set("Proxy-Connection", "keep-alive")
			req.Header.Set("Upgrade", "h2c") // not named in Connection: no upgrade, just dropped
			req.Header.Set("Te", tc.te)
			req.Header.Set("X-End-To-End", "keep me")
			resp, body := do(t, c, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			s := decodeSeen(t, body)
			for _, h := range []string{"Connection", "X-Conn-Named", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
				if v, ok := s.Header[h]; ok {
					t.Errorf("upstream got hop-by-hop %s: %q", h, v)
				}
			}
			if got := s.Header["Te"]; !slices.Equal(got, tc.wantTE) {
				t.Errorf("upstream Te = %q, want %q", got, tc.wantTE)
			}
			if got := s.Header.Get("X-End-To-End"); got != "keep me" {
				t.Errorf("upstream X-End-To-End = %q", got)
			}
		})
	}
}

func TestHopByHopResponse(t *testing.T) {
	t.Parallel()
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Resp-Named")
		h.Set("X-Resp-Named", "drop me")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "foo")
		h.Set("X-End-To-End", "keep me")
		_, _ = w.Write([]byte("ok"))
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	resp, body := get(t, newClient(t), g.URL, "", "/")
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	for _, h := range []string{"X-Resp-Named", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("client got hop-by-hop %s: %q", h, v)
		}
	}
	if v := resp.Header.Get("Connection"); v != "" && v != "close" && v != "keep-alive" {
		t.Errorf("client got the upstream's Connection header %q", v)
	}
	if got := resp.Header.Get("X-End-To-End"); got != "keep me" {
		t.Errorf("X-End-To-End = %q", got)
	}
}

var requestIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestForwardedHeadersAndRequestID(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
	c := newClient(t)

	t.Run("fresh", func(t *testing.T) {
		t.Parallel()
		_, body := get(t, c, g.URL, "Client.Example.com:1234", "/p")
		s := decodeSeen(t, body)
		if s.Host != "Client.Example.com:1234" {
			t.Errorf("upstream Host = %q, want the client's", s.Host)
		}
		want := map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "Client.Example.com:1234",
		}
		for k, v := range want {
			if got := s.Header[k]; !slices.Equal(got, []string{v}) {
				t.Errorf("upstream %s = %q, want %q", k, got, v)
			}
		}
		if id := s.Header.Get("X-Request-Id"); !requestIDPattern.MatchString(id) {
			t.Errorf("generated x-request-id %q is not 32 hex digits", id)
		}
	})
	t.Run("appended-and-kept", func(t *testing.T) {
		t.Parallel()
		req, _ := http.NewRequest(http.MethodGet, g.URL+"/p", nil)
		req.Header.Add("X-Forwarded-For", "10.0.0.1")
		req.Header.Add("X-Forwarded-For", "10.0.0.2")
		req.Header.Set("X-Request-Id", "my-id-1")
		_, body := do(t, c, req)
		s := decodeSeen(t, body)
		if got := s.Header["X-Forwarded-For"]; !slices.Equal(got, []string{"10.0.0.1, 10.0.0.2, 127.0.0.1"}) {
			t.Errorf("X-Forwarded-For = %q", got)
		}
		if got := s.Header["X-Request-Id"]; !slices.Equal(got, []string{"my-id-1"}) {
			t.Errorf("X-Request-Id = %q, want the client's", got)
		}
	})
	t.Run("unique", func(t *testing.T) {
		t.Parallel()
		_, b1 := get(t, c, g.URL, "", "/")
		_, b2 := get(t, c, g.URL, "", "/")
		if a, b := decodeSeen(t, b1).Header.Get("X-Request-Id"), decodeSeen(t, b2).Header.Get("X-Request-Id"); a == b {
			t.Errorf("two requests got the same id %q", a)
		}
	})
}

func TestHeaderModifiers(t *testing.T) {
	t.Parallel()
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Up-Set", "upstream")
		w.Header().Set("X-Up-Add", "upstream")
		w.Header().Set("X-Up-Remove", "upstream")
		echoHandler("b")(w, r)
	}))
	r := prefixRoute("r", "/", backendOf(t, "b", up))
	r.RequestHeaders = &ir.HeaderModifier{
		Set:    []ir.Header{{Name: "x-set", Value: "gw"}, {Name: "X-New", Value: "new"}},
		Add:    []ir.Header{{Name: "X-ADD", Value: "gw"}},
		Remove: []string{"x-remove"},
	}
	r.ResponseHeaders = &ir.HeaderModifier{
		Set:    []ir.Header{{Name: "x-up-set", Value: "gw"}},
		Add:    []ir.Header{{Name: "X-Up-Add", Value: "gw"}},
		Remove: []string{"X-UP-REMOVE"},
	}
	g := startGateway(t, Options{}, simpleConfig(r))
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/", nil)
	req.Header.Add("X-Set", "client1")
	req.Header.Add("X-Set", "client2")
	req.Header.Set("X-Add", "client")
	req.Header.Set("X-Remove", "client")
	resp, body := do(t, newClient(t), req)
	s := decodeSeen(t, body)
	wantUp := map[string][]string{
		"X-Set":    {"gw"},
		"X-New":    {"new"},
		"X-Add":    {"client", "gw"},
		"X-Remove": nil,
	}
	for k, v := range wantUp {
		if got := s.Header[k]; !slices.Equal(got, v) {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
	wantDown := map[string][]string{
		"X-Up-Set":    {"gw"},
		"X-Up-Add":    {"upstream", "gw"},
		"X-Up-Remove": nil,
	}
	for k, v := range wantDown {
		if got := resp.Header[k]; !slices.Equal(got, v) {
			t.Errorf("client %s = %q, want %q", k, got, v)
		}
	}
}

func TestRemoveHopByHopConnectionOptions(t *testing.T) {
	h := http.Header{
		"Connection": {"keep-alive, X-Foo", " CLOSE ,Upgrade"},
		"Keep-Alive": {"timeout=5"},
		"X-Foo":      {"1"},
		"Close":      {"x"},
		"Upgrade":    {"websocket"},
		"X-Keep":     {"kept"},
	}
	removeHopByHop(h, false)
	if len(h) != 1 || h.Get("X-Keep") != "kept" {
		t.Errorf("after removing hop-by-hop headers: %v", h)
	}
}

// TestBackendHeaderModifiers checks that a backendRef's own header filters apply, after
// the rule's, only to the requests sent to that backend and to its responses.
func TestBackendHeaderModifiers(t *testing.T) {
	t.Parallel()
	r := prefixRoute("r", "/", nil)
	r.RequestHeaders = &ir.HeaderModifier{Set: []ir.Header{{Name: "X-Rule", Value: "rule"}, {Name: "X-Both", Value: "rule"}}}
	r.Backends = nil
	for _, name := range []string{"a", "b"} {
		r.Backends = append(r.Backends, ir.WeightedBackend{
			Weight:          1,
			Backend:         backendOf(t, name, echoBackend(t, name)),
			RequestHeaders:  &ir.HeaderModifier{Set: []ir.Header{{Name: "X-Backend-Filter", Value: name}, {Name: "X-Both", Value: name}}},
			ResponseHeaders: &ir.HeaderModifier{Add: []ir.Header{{Name: "X-Answered-By", Value: name}}},
		})
	}
	g := startGateway(t, Options{}, simpleConfig(r))
	c := newClient(t)
	seenBackends := map[string]bool{}
	// The backend is picked at random by weight: ask until both answered (bounded).
	for i := 0; i < 200 && (i < 8 || len(seenBackends) < 2); i++ {
		resp, body := get(t, c, g.URL, "", "/")
		s := decodeSeen(t, body)
		seenBackends[s.Backend] = true
		if got := s.Header.Get("X-Backend-Filter"); got != s.Backend {
			t.Errorf("backend %s saw X-Backend-Filter %q", s.Backend, got)
		}
		if got := s.Header["X-Both"]; !slices.Equal(got, []string{s.Backend}) {
			t.Errorf("backend %s saw X-Both %q, want the backend's value over the rule's", s.Backend, got)
		}
		if got := s.Header.Get("X-Rule"); got != "rule" {
			t.Errorf("backend %s saw X-Rule %q", s.Backend, got)
		}
		if got := resp.Header["X-Answered-By"]; !slices.Equal(got, []string{s.Backend}) {
			t.Errorf("response from %s has X-Answered-By %q", s.Backend, got)
		}
	}
	if len(seenBackends) != 2 {
		t.Errorf("backends reached: %v, want both", seenBackends)
	}
}
