package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// A processor that fails its stream on the response side: fail-closed answers
// statusOnError, fail-open delivers the upstream's response.
func TestStreamErrorOnResponseSide(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			return failRPC
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("closed", "closed.example.com", rule{backend: "up"}),
		routeYAML("open", "open.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("closed", routeTarget("closed"), "", "p", "statusOnError: 502"),
		policyYAML("open", routeTarget("open"), "", "p", "failureMode: FailOpen"),
	))
	if r := g.get("closed.example.com", "/"); r.Status != 502 || r.Header.Get("X-Upstream") != "" {
		t.Errorf("fail-closed: %d %v", r.Status, r.Header)
	}
	up.seen(t)
	r := g.get("open.example.com", "/o")
	if r.Status != 200 || decode(t, r).Path != "/o" {
		t.Errorf("fail-open: %d %s", r.Status, r.Body)
	}
	up.seen(t)
}

// A client that goes away while the processor thinks: the processor's stream is cancelled
// at once, not at the message timeout, and the upstream is never asked.
func TestClientDisconnectCancelsStream(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return hang })
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", "messageTimeout: 8s"),
	))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", g.url("/wait"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "a.example.com"
	errc := make(chan error, 1)
	go func() {
		resp, err := g.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	p.only(t, 1)
	cancel()
	start := time.Now()
	if err := <-errc; err == nil {
		t.Error("the cancelled request succeeded")
	}
	select {
	case canceled := <-p.ended:
		if !canceled {
			t.Error("the processor's stream ended without being cancelled")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("stream cancelled %v after the client left, want at once", d)
		}
	case <-time.After(waitFor):
		t.Fatal("the processor's stream outlived the client")
	}
	up.none(t)
}

// A slow processor under concurrent load: every request completes, each with its own
// stream, all over one shared connection.
func TestSlowProcessorUnderLoad(t *testing.T) {
	t.Parallel()
	const clients, each = 16, 5
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		time.Sleep(10 * time.Millisecond)
		if h := m.GetRequestHeaders(); h != nil {
			id, _ := headerOf(h.GetHeaders(), "x-client")
			return reqHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr("x-seen-by-proc", id))})
		}
		return nil
	})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("r", "a.example.com", rule{backend: "up"}),
		backendYAML("up", up.srv.Listener.Addr().String()),
		procBackendYAML("p", p.addr),
		policyYAML("p", gwTarget, "", "p", ""),
	))
	errs := make(chan string, clients*each)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := strconv.Itoa(c)
			for range each {
				req, _ := http.NewRequest("GET", g.url("/load"), nil)
				req.Host = "a.example.com"
				req.Header.Set("X-Client", id)
				resp, err := g.client.Do(req)
				if err != nil {
					errs <- err.Error()
					continue
				}
				var e echoed
				err = json.NewDecoder(resp.Body).Decode(&e)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || e.Header.Get("X-Seen-By-Proc") != id {
					errs <- fmt.Sprintf("client %s: status %d, upstream saw x-seen-by-proc %q (%v)", id, resp.StatusCode, e.Header.Get("X-Seen-By-Proc"), err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := p.count(); n != clients*each {
		t.Errorf("processor got %d streams, want %d", n, clients*each)
	}
	if n := p.conns.Load(); n != 1 {
		t.Errorf("processor accepted %d connections, want 1 shared", n)
	}
}
