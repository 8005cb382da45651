package app

import (
	"context"
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

	"github.com/sluice-gateway/sluice/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// config is a Gateway on port with one route for host to the backend at addr.
func config(port int, host, addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: sluice
  listeners: [{name: http, port: %d, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  hostnames: [%s]
  rules: [{backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: b}]}]
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: b}
spec: {endpoints: [{host: %s, port: %s}]}
`, port, host, h, p)
}

func TestReloadKeepsLastGoodConfig(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host)
	}))
	defer backend.Close()
	port := testutil.FreePort(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yaml")
	write := func(s string) {
		t.Helper()
		// Write then rename, as editors do, so the watcher never reads half a file.
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(config(port, "a.example.com", backend.Listener.Addr().String()))

	var logs testutil.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			ConfigPaths: []string{dir},
			BindAddress: "127.0.0.1",
			AdminAddr:   "127.0.0.1:0",
			Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
			Ready:       func(_ map[int32]net.Addr, admin net.Addr) { ready <- admin },
		})
	}()
	var admin net.Addr
	select {
	case admin = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	status := func(host string) int {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := status("a.example.com"); got != 200 {
		t.Fatalf("initial config: %d", got)
	}
	if resp, err := client.Get("http://" + admin.String() + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// A valid edit is applied without a restart.
	write(config(port, "b.example.com", backend.Listener.Addr().String()))
	eventually("the new host to be routed", func() bool { return status("b.example.com") == 200 })
	if got := status("a.example.com"); got != 404 {
		t.Errorf("old host after reload: %d, want 404", got)
	}

	// An invalid edit is logged and the last good configuration keeps serving.
	write(strings.Replace(config(port, "c.example.com", backend.Listener.Addr().String()), "hostnames:", "hostnamez:", 1))
	eventually("the rejected edit to be logged", func() bool { return strings.Contains(logs.String(), "configuration change rejected") })
	if !strings.Contains(logs.String(), "hostnamez") {
		t.Errorf("the log does not name the bad field:\n%s", logs.String())
	}
	if got := status("b.example.com"); got != 200 {
		t.Errorf("last good config after an invalid edit: %d, want 200", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestInvalidFirstConfigFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {listenerz: []}\n"), 0o600)
	err := Run(context.Background(), Options{ConfigPaths: []string{dir}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml#1") || !strings.Contains(err.Error(), "listenerz") {
		t.Fatalf("Run = %v, want an error naming the file and field", err)
	}
}
