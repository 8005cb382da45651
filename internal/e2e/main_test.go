package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gateway/sluice/internal/app"
	"github.com/sluice-gateway/sluice/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait in these tests.
const waitFor = 10 * time.Second

// ---- the gateway ----

// gateway is one app.Run process serving a configuration directory.
type gateway struct {
	t      testing.TB
	port   int
	dir    string
	client *http.Client
	logs   *testutil.LogBuffer
}

func freePort(t testing.TB) int { return testutil.FreePort(t) }

// startGateway writes cfg (with {{PORT}} replaced by a free port) to a temporary directory
// and serves it with app.Run until the test ends.
func startGateway(t testing.TB, cfg string) *gateway {
	t.Helper()
	g := &gateway{t: t, dir: t.TempDir(), logs: &testutil.LogBuffer{}}
	g.port = freePort(t)
	g.write(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{
			ConfigPaths:  []string{g.dir},
			BindAddress:  "127.0.0.1",
			DrainTimeout: 2 * time.Second,
			Logger:       slog.New(slog.NewTextHandler(g.logs, nil)),
			Ready:        func(map[int32]net.Addr, net.Addr) { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("app.Run: %v\nconfig:\n%s", err, g.config(cfg))
	case <-time.After(waitFor):
		cancel()
		t.Fatal("gateway not ready")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	g.client = &http.Client{Transport: tr, Timeout: waitFor}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("app.Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("app.Run did not return after cancel")
		}
	})
	return g
}

func (g *gateway) config(cfg string) string {
	return strings.ReplaceAll(cfg, "{{PORT}}", fmt.Sprint(g.port))
}

// write replaces the configuration, as an editor does (write then rename).
func (g *gateway) write(cfg string) {
	g.t.Helper()
	tmp := filepath.Join(g.dir, ".tmp")
	if err := os.WriteFile(tmp, []byte(g.config(cfg)), 0o600); err != nil {
		g.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(g.dir, "gw.yaml")); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", g.port, path) }

// response is what the client saw.
type response struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
}

// do sends one request with the given host and headers (pairs) and reads the whole answer.
func (g *gateway) do(method, host, path string, body io.Reader, hdr ...string) response {
	g.t.Helper()
	req, err := http.NewRequest(method, g.url(path), body)
	if err != nil {
		g.t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v\nlogs:\n%s", method, path, err, g.logs.String())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("reading the response: %v", err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Trailer: resp.Trailer}
}

func (g *gateway) get(host, path string, hdr ...string) response {
	g.t.Helper()
	return g.do("GET", host, path, nil, hdr...)
}

// eventually polls cond until it holds, within waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, waitFor, what, cond)
}

// ---- the upstream ----

// echoed is what the upstream received, as it answers it in JSON.
type echoed struct {
	Name    string      `json:"name"`
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	Host    string      `json:"host"`
	Header  http.Header `json:"header"`
	Body    string      `json:"body"`
	Trailer http.Header `json:"trailer"`
	CL      int64       `json:"contentLength"`
}

// upstream is an HTTP server that records each request and answers it with its echo,
// or with respond when set.
type upstream struct {
	name string
	srv  *httptest.Server
	reqs chan echoed
}

func newUpstream(t testing.TB, name string, respond http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{name: name, reqs: make(chan echoed, 256)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e := echoed{Name: name, Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host,
			Header: r.Header.Clone(), Body: string(b), Trailer: r.Trailer.Clone(), CL: r.ContentLength}
		select {
		case u.reqs <- e:
		default:
		}
		if respond != nil {
			respond(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", name)
		_ = json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// hostPort is the upstream's address as YAML host and port.
func (u *upstream) hostPort() (string, string) {
	h, p, _ := net.SplitHostPort(u.srv.Listener.Addr().String())
	return h, p
}

// seen returns the next request the upstream received.
func (u *upstream) seen(t testing.TB) echoed {
	t.Helper()
	select {
	case e := <-u.reqs:
		return e
	case <-time.After(waitFor):
		t.Fatalf("upstream %s saw no request", u.name)
	}
	return echoed{}
}

// none asserts the upstream received nothing.
func (u *upstream) none(t testing.TB) {
	t.Helper()
	select {
	case e := <-u.reqs:
		t.Fatalf("upstream %s saw %s %s, want nothing", u.name, e.Method, e.Path)
	default:
	}
}

// decode parses the echo of the client's response body.
func decode(t testing.TB, r response) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
		t.Fatalf("response is not an upstream echo (status %d): %v\n%s", r.Status, err, r.Body)
	}
	return e
}
