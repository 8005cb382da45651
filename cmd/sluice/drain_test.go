package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/testutil"
)

// TestSIGTERMDrains runs `sluice run`, sends the process SIGTERM while a slow request is
// in flight, and checks that the request completes and the command exits 0.
func TestSIGTERMDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	}))
	defer up.Close()
	port := testutil.FreePort(t)
	host, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
	cfg := filepath.Join(t.TempDir(), "gw.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
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
  rules: [{backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: b}]}]
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: b}
spec: {endpoints: [{host: %s, port: %s}]}
`, port, host, upPort)), 0o600)

	code := make(chan int, 1)
	go func() {
		code <- run([]string{"run", "--config", cfg, "--bind-address", "127.0.0.1", "--admin-addr", "", "--access-log=false", "--drain-timeout", "10s"}, io.Discard, io.Discard)
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sluice run did not start listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client.Get(base)
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	// run() is listening for SIGTERM (signal.NotifyContext), so this does not kill the test.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	select {
	case r := <-res:
		if r.err != nil || r.body != "finished" {
			t.Errorf("in-flight request: %q, %v; want it to finish", r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sluice run did not exit after SIGTERM")
	}
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		t.Error("still accepting connections after SIGTERM")
	}
}
