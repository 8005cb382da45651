package demo

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gateway/sluice/internal/app"
	"github.com/sluice-gateway/sluice/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDocumentedExample runs the demo as a user would and sends the documented request.
func TestDocumentedExample(t *testing.T) {
	port := testutil.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	var out strings.Builder
	go func() {
		done <- Run(ctx, Options{
			Gateway: app.Options{
				BindAddress: "127.0.0.1",
				Ready:       func(map[int32]net.Addr, net.Addr) { close(ready) },
			},
			Port:          port,
			HTTPBinAddr:   "127.0.0.1:0",
			ProcessorAddr: "127.0.0.1:0",
			Out:           &out,
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("demo did not stop")
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("demo stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("demo not ready")
	}
	if !strings.Contains(out.String(), "curl -i localhost:"+strconv.Itoa(port)+"/headers -H 'host: www.example.com'") {
		t.Errorf("the demo did not print the curl to try:\n%s", out.String())
	}

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	get := func(path string, header map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
		req.Host = "www.example.com"
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := get("/headers", map[string]string{"instructions": `{"addHeaders":{"extproc":"true"}}`})
	var echoed struct {
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal(body, &echoed); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, body %s (%v)", resp.StatusCode, body, err)
	}
	if got := echoed.Headers["Extproc"]; len(got) != 1 || got[0] != "true" {
		t.Errorf(`httpbin saw Extproc %q, want ["true"]; headers %v`, got, echoed.Headers)
	}
	if got := echoed.Headers["Instructions"]; len(got) != 1 {
		t.Errorf("httpbin saw Instructions %q, want the header kept", got)
	}

	resp, _ = get("/response-headers?instructions="+`%7B%22addHeaders%22%3A%7B%22x-from-processor%22%3A%22yes%22%7D%7D`, nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-From-Processor") != "yes" {
		t.Errorf("response side: status %d, X-From-Processor %q", resp.StatusCode, resp.Header.Get("X-From-Processor"))
	}

	// Malformed instructions end the processor's stream with an error: fail-closed, 500.
	resp, _ = get("/headers", map[string]string{"instructions": `{"addHeaders":`})
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("malformed instructions: status %d, want 500", resp.StatusCode)
	}
}

func TestConfigRendersPorts(t *testing.T) {
	t.Parallel()
	cfg, err := Config(Ports{GatewayPort: 8080, HTTPBinHost: "127.0.0.1", HTTPBinPort: 8000, ProcessorHost: "127.0.0.1", ProcessorPort: 18080})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: agentgateway-proxy", "port: 8080", "port: 8000", "port: 18080", "- www.example.com", "kind: TrafficPolicy"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("demo config lacks %q", want)
		}
	}
}
