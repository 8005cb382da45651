package dataplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// slowBackend answers "slow" once release is closed; it signals each arrival on arrived.
func slowBackend(t *testing.T, arrived chan<- struct{}, release <-chan struct{}) *ir.Backend {
	return backendOf(t, "slow", newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
			fmt.Fprint(w, "slow")
		case <-r.Context().Done():
		case <-time.After(wait):
		}
	})))
}

type result struct {
	status int
	body   string
	err    error
}

// goGet sends a GET in the background.
func goGet(c *http.Client, url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

func portURL(p int32) string { return "http://127.0.0.1:" + strconv.Itoa(int(p)) }

func TestReloadKeepsInFlightRequests(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	slow := slowBackend(t, arrived, release)
	fresh := backendOf(t, "new", echoBackend(t, "new"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("old", "/", slow)))
	c := newClient(t)
	inflight := goGet(c, g.URL+"/")
	recvWithin(t, arrived, "the request to reach the old backend")

	cfg := simpleConfig(prefixRoute("new", "/", fresh))
	cfg.Ports[0].Number = g.Port
	if err := g.Apply(cfg, nil); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, c, g.URL, "", "/")
	if s := decodeSeen(t, body); s.Backend != "new" {
		t.Errorf("after the reload, served by %q", s.Backend)
	}
	close(release)
	r := recvWithin(t, inflight, "the in-flight request")
	if r.err != nil || r.status != http.StatusOK || r.body != "slow" {
		t.Errorf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
}

func TestApplyUnbindablePortKeepsOldConfig(t *testing.T) {
	t.Parallel()
	old := backendOf(t, "old", echoBackend(t, "old"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("old", "/", old)))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := int32(taken.Addr().(*net.TCPAddr).Port)
	newPort := freePort(t)

	fresh := backendOf(t, "new", echoBackend(t, "new"))
	vh := vhostOf("", prefixRoute("new", "/", fresh))
	cfg := &ir.Config{Ports: []*ir.Port{
		{Number: g.Port, Protocol: ir.ProtocolHTTP, Listeners: []*ir.Listener{listener("l", "", vh)}},
		{Number: newPort, Protocol: ir.ProtocolHTTP, Listeners: []*ir.Listener{listener("l2", "", vh)}},
		{Number: takenPort, Protocol: ir.ProtocolHTTP, Listeners: []*ir.Listener{listener("l3", "", vh)}},
	}}
	err = g.Apply(cfg, nil)
	if err == nil {
		t.Fatal("Apply bound a port that is taken")
	}
	t.Logf("Apply: %v", err)
	_, body := get(t, newClient(t), g.URL, "", "/")
	if s := decodeSeen(t, body); s.Backend != "old" {
		t.Errorf("after the failed Apply, served by %q", s.Backend)
	}
	if addrs := g.Addrs(); len(addrs) != 1 || addrs[g.Port] == nil {
		t.Errorf("Addrs after the failed Apply: %v", addrs)
	}
	// The port bound before the failure is released.
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(int(newPort)))
	if err != nil {
		t.Errorf("port %d still held after the failed Apply: %v", newPort, err)
	} else {
		ln.Close()
	}
}

func TestRemovedPortStopsListening(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	vh := vhostOf("", prefixRoute("r", "/", b))
	cfg := &ir.Config{Ports: []*ir.Port{httpPort(listener("a", "", vh)), httpPort(listener("b", "", vh))}}
	g := startGateway(t, Options{}, cfg)
	keep, drop := cfg.Ports[0].Number, cfg.Ports[1].Number
	c := newClient(t)
	for _, p := range []int32{keep, drop} {
		if resp, _ := get(t, c, portURL(p), "", "/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("port %d: status %d", p, resp.StatusCode)
		}
	}
	if err := g.Apply(&ir.Config{Ports: []*ir.Port{{Number: keep, Protocol: ir.ProtocolHTTP, Listeners: cfg.Ports[0].Listeners}}}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed port to refuse connections", func() bool {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(drop)), time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	if resp, _ := get(t, c, portURL(keep), "", "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("kept port: status %d", resp.StatusCode)
	}
	if _, ok := g.Addrs()[drop]; ok {
		t.Errorf("Addrs still lists port %d", drop)
	}
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", slowBackend(t, arrived, release))))
	inflight := goGet(newClient(t), g.URL+"/")
	recvWithin(t, arrived, "the request to reach the backend")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- g.Shutdown(ctx)
	}()
	eventually(t, "the listener to close", func() bool {
		conn, err := net.DialTimeout("tcp", g.URL[len("http://"):], time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	r := recvWithin(t, inflight, "the in-flight request")
	if r.err != nil || r.status != http.StatusOK || r.body != "slow" {
		t.Errorf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	if err := recvWithin(t, done, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := g.Apply(simpleConfig(), nil); err == nil {
		t.Error("Apply after Shutdown succeeded")
	}
}

// TestShutdownBounded: a request that never ends does not hold Shutdown past its context.
func TestShutdownBounded(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", slowBackend(t, arrived, release))))
	inflight := goGet(newClient(t), g.URL+"/")
	recvWithin(t, arrived, "the request to reach the backend")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := g.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if r := recvWithin(t, inflight, "the cut request"); r.err == nil && r.status == http.StatusOK && r.body == "slow" {
		t.Error("the request completed although Shutdown gave up on it")
	}
}

// TestShutdownWaitsForRemovedPorts: requests on a port removed by a reload are drained by
// Shutdown too, not cut when the process exits.
func TestShutdownWaitsForRemovedPorts(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	slow := slowBackend(t, arrived, release)
	vh := vhostOf("", prefixRoute("r", "/", slow))
	cfg := &ir.Config{Ports: []*ir.Port{httpPort(listener("a", "", vh)), httpPort(listener("b", "", vh))}}
	g := startGateway(t, Options{Limits: Limits{IdleTimeout: time.Minute}}, cfg)
	inflight := goGet(newClient(t), portURL(cfg.Ports[1].Number)+"/")
	recvWithin(t, arrived, "the request to reach the backend")
	if err := g.Apply(&ir.Config{Ports: cfg.Ports[:1]}, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- g.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		close(release)
		t.Fatalf("Shutdown returned (%v) while the removed port still serves a request", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if r := recvWithin(t, inflight, "the in-flight request"); r.err != nil || r.status != http.StatusOK {
		t.Errorf("in-flight request: %d %v", r.status, r.err)
	}
	if err := recvWithin(t, done, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestProtocolChangeOnSamePort: a port that switches from HTTP to HTTPS is re-bound.
func TestProtocolChangeOnSamePort(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
	if resp, _ := get(t, newClient(t), g.URL, "", "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP: status %d", resp.StatusCode)
	}
	cert, key := selfSigned(t, "tls.test")
	l := listener("tls", "tls.test", vhostOf("tls.test", prefixRoute("r", "/", b)))
	l.Certificates = []ir.Certificate{{Name: "default/tls", CertPEM: cert, KeyPEM: key}}
	if err := g.Apply(&ir.Config{Ports: []*ir.Port{{Number: g.Port, Protocol: ir.ProtocolHTTPS, Listeners: []*ir.Listener{l}}}}, nil); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "tls.test", RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, body := get(t, &http.Client{Transport: tr, Timeout: wait}, "https://127.0.0.1:"+strconv.Itoa(int(g.Port)), "tls.test", "/")
	if resp.StatusCode != http.StatusOK || decodeSeen(t, body).Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("HTTPS after the switch: %d %s", resp.StatusCode, body)
	}
}
