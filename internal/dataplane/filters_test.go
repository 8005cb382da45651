package dataplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// testFilter is a filter.Factory whose instances run the given hooks and count their calls.
type testFilter struct {
	request  func(ex *filter.Exchange) *filter.LocalReply
	response func(ex *filter.Exchange, resp *http.Response) *filter.LocalReply

	mu        sync.Mutex
	started   int
	responses int
	dones     []error // one per Done call, in order
	twice     int     // instances whose Done was called more than once
}

func (f *testFilter) Start(*filter.Exchange) filter.Instance {
	f.mu.Lock()
	f.started++
	f.mu.Unlock()
	return &testInstance{f: f}
}

type testInstance struct {
	f     *testFilter
	dones atomic.Int32
}

func (i *testInstance) Request(_ context.Context, ex *filter.Exchange) *filter.LocalReply {
	if i.f.request == nil {
		return nil
	}
	return i.f.request(ex)
}

func (i *testInstance) Response(_ context.Context, ex *filter.Exchange, resp *http.Response) *filter.LocalReply {
	i.f.mu.Lock()
	i.f.responses++
	i.f.mu.Unlock()
	if i.f.response == nil {
		return nil
	}
	return i.f.response(ex, resp)
}

func (i *testInstance) Done(err error) {
	n := i.dones.Add(1)
	i.f.mu.Lock()
	defer i.f.mu.Unlock()
	i.f.dones = append(i.f.dones, err)
	if n > 1 {
		i.f.twice++
	}
}

// waitDone waits until every started instance is done, and checks that each was done once.
func (f *testFilter) waitDone(t *testing.T, name string) []error {
	t.Helper()
	eventually(t, name+"'s Done calls", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.dones) >= f.started
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.twice > 0 || len(f.dones) != f.started {
		t.Errorf("%s: %d instances, %d Done calls, %d instances done more than once", name, f.started, len(f.dones), f.twice)
	}
	return append([]error(nil), f.dones...)
}

// filterGateway starts a gateway whose processors are the named test filters.
func filterGateway(t *testing.T, filters map[string]*testFilter, cfg *ir.Config) *testGateway {
	build := func(x *ir.ExtProc) (filter.Factory, error) {
		f, ok := filters[x.Policy]
		if !ok {
			return nil, fmt.Errorf("no test filter %q", x.Policy)
		}
		return f, nil
	}
	return startGateway(t, Options{BuildFilter: build}, cfg)
}

func withFilter(r *ir.Route, policy string) *ir.Route {
	r.ExtProc = &ir.ExtProc{Policy: policy}
	return r
}

func TestFilterMutatesRequestAndResponse(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	f := &testFilter{
		request: func(ex *filter.Exchange) *filter.LocalReply {
			ex.Request.Header.Set("X-Filter", ex.Route)
			ex.Request.Header.Del("X-Remove-Me")
			ex.Request.URL.Path = "/changed"
			ex.Request.URL.RawQuery = "a=1"
			return nil
		},
		response: func(ex *filter.Exchange, resp *http.Response) *filter.LocalReply {
			resp.StatusCode = http.StatusNonAuthoritativeInfo
			resp.Header.Set("X-Resp-Filter", ex.Backend)
			resp.Header.Del("X-Backend")
			return nil
		},
	}
	g := filterGateway(t, map[string]*testFilter{"mutate": f},
		simpleConfig(withFilter(tagged("orig", prefix("/orig"), b), "mutate")))
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/orig/x", nil)
	req.Header.Set("X-Remove-Me", "1")
	resp, body := do(t, newClient(t), req)
	if resp.StatusCode != http.StatusNonAuthoritativeInfo {
		t.Errorf("status %d, want the filter's 203", resp.StatusCode)
	}
	if resp.Header.Get("X-Resp-Filter") != "echo" || resp.Header.Get("X-Backend") != "" {
		t.Errorf("response headers %v", resp.Header)
	}
	s := decodeSeen(t, body)
	if s.Path != "/changed" || s.Query != "a=1" || s.Header.Get("X-Filter") != "orig" || s.Header.Get("X-Remove-Me") != "" {
		t.Errorf("upstream got %s?%s headers %v", s.Path, s.Query, s.Header)
	}
	// Without ClearRouteCache the route chosen first still serves.
	if s.Header.Get("X-Route") != "orig" {
		t.Errorf("served by route %q", s.Header.Get("X-Route"))
	}
	for _, err := range f.waitDone(t, "mutate") {
		if err != nil {
			t.Errorf("Done(%v) after a complete response", err)
		}
	}
}

func TestFilterClearRouteCache(t *testing.T) {
	t.Parallel()
	a := backendOf(t, "a", echoBackend(t, "a"))
	b := backendOf(t, "b", echoBackend(t, "b"))
	toB := func(clear bool) *testFilter {
		return &testFilter{request: func(ex *filter.Exchange) *filter.LocalReply {
			ex.Request.URL.Path = "/b"
			ex.ClearRouteCache = clear
			return nil
		}}
	}
	filters := map[string]*testFilter{"clear": toB(true), "keep": toB(false)}
	g := filterGateway(t, filters, simpleConfig(
		withFilter(prefixRoute("a", "/a", a), "clear"),
		withFilter(prefixRoute("c", "/c", a), "keep"),
		prefixRoute("b", "/b", b),
	))
	c := newClient(t)
	for _, tc := range []struct{ path, wantBackend string }{{"/a", "b"}, {"/c", "a"}} {
		_, body := get(t, c, g.URL, "", tc.path)
		if s := decodeSeen(t, body); s.Backend != tc.wantBackend || s.Path != "/b" {
			t.Errorf("%s: upstream %s got %s, want %s got /b", tc.path, s.Backend, s.Path, tc.wantBackend)
		}
	}
	for name, f := range filters {
		f.waitDone(t, name)
	}
}

func TestFilterLocalReplies(t *testing.T) {
	t.Parallel()
	var upstreamHits atomic.Int32
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits.Add(1)
		fmt.Fprint(w, "upstream")
	}))
	b := backendOf(t, "b", up)
	outer := &testFilter{response: func(ex *filter.Exchange, resp *http.Response) *filter.LocalReply {
		resp.Header.Set("X-Outer-Saw", fmt.Sprint(resp.StatusCode))
		return nil
	}}
	deny := &testFilter{request: func(ex *filter.Exchange) *filter.LocalReply {
		return filter.Reply(http.StatusForbidden, "test_denied", "denied by filter\n")
	}}
	replace := &testFilter{response: func(ex *filter.Exchange, resp *http.Response) *filter.LocalReply {
		return filter.Reply(http.StatusTeapot, "test_replaced", "replaced\n")
	}}
	filters := map[string]*testFilter{"outer": outer, "deny": deny, "replace": replace}
	l := listener("l", "", vhostOf("",
		withFilter(prefixRoute("deny", "/deny", b), "deny"),
		withFilter(prefixRoute("replace", "/replace", b), "replace"),
		prefixRoute("plain", "/", b),
	))
	l.PreRouting = &ir.ExtProc{Policy: "outer"}
	g := filterGateway(t, filters, &ir.Config{Ports: []*ir.Port{httpPort(l)}})
	c := newClient(t)
	for _, tc := range []struct {
		path     string
		wantCode int
		wantBody string
		wantHits int32
	}{
		{"/deny", 403, "denied by filter\n", 0},
		{"/replace", 418, "replaced\n", 1},
		{"/plain", 200, "upstream", 2},
		{"/deny/not-found-either", 403, "denied by filter\n", 2},
	} {
		resp, body := get(t, c, g.URL, "", tc.path)
		if resp.StatusCode != tc.wantCode || body != tc.wantBody {
			t.Errorf("%s: got %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.wantCode, tc.wantBody)
		}
		if got := resp.Header.Get("X-Outer-Saw"); got != fmt.Sprint(tc.wantCode) {
			t.Errorf("%s: the pre-routing filter saw status %q, want %d", tc.path, got, tc.wantCode)
		}
		if got := upstreamHits.Load(); got != tc.wantHits {
			t.Errorf("%s: upstream hit %d times, want %d", tc.path, got, tc.wantHits)
		}
	}
	outer.waitDone(t, "outer")
	deny.waitDone(t, "deny")
	replace.waitDone(t, "replace")
	deny.mu.Lock()
	if deny.responses != 0 {
		t.Errorf("the filter that answered locally saw %d responses", deny.responses)
	}
	deny.mu.Unlock()
}

// TestFilterPathChangeWithPrefixRewrite: a filter that changes the path without clearing
// the route cache must not break the route's ReplacePrefixMatch.
func TestFilterPathChangeWithPrefixRewrite(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	f := &testFilter{request: func(ex *filter.Exchange) *filter.LocalReply {
		ex.Request.URL.Path = strings.TrimPrefix(ex.Request.URL.Path, "/api/long-prefix")
		return nil
	}}
	r := withFilter(prefixRoute("r", "/api/long-prefix", b), "shorten")
	r.Rewrite = &ir.Rewrite{PathType: ir.ReplacePrefixMatch, Path: "/v2"}
	g := filterGateway(t, map[string]*testFilter{"shorten": f}, simpleConfig(r))
	resp, err := newClient(t).Get(g.URL + "/api/long-prefix/x")
	if err != nil {
		t.Fatalf("the gateway broke the connection: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if s := decodeSeen(t, string(body)); s.Path != "/x" {
		t.Errorf("upstream got %q, want the filter's /x", s.Path)
	}
	f.waitDone(t, "shorten")
}

// TestFilterDoneOnBrokenResponse: Done reports an error when the response could not be
// sent whole.
func TestFilterDoneOnBrokenResponse(t *testing.T) {
	t.Parallel()
	broken := rawBackend(t, "broken", func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 64<<10))
	})
	f := &testFilter{}
	g := filterGateway(t, map[string]*testFilter{"f": f}, simpleConfig(withFilter(prefixRoute("r", "/", broken), "f")))
	resp, err := newClient(t).Get(g.URL + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("the client got a clean response")
	}
	for _, err := range f.waitDone(t, "f") {
		if err == nil {
			t.Error("Done(nil) for a response cut short")
		}
	}
}
