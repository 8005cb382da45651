package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gateway/sluice/internal/translate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// watchResult is one onChange call.
type watchResult struct {
	res *translate.Resources
	err error
}

// startWatch runs Watch on paths until the test ends and returns its onChange calls.
func startWatch(t *testing.T, paths ...string) <-chan watchResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan watchResult, 16)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, paths, func(r *translate.Resources, err error) { ch <- watchResult{r, err} })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	// Give the watcher time to register before the test changes anything.
	time.Sleep(50 * time.Millisecond)
	return ch
}

// next waits (bounded) for an onChange call whose result satisfies ok.
func next(t *testing.T, ch <-chan watchResult, ok func(watchResult) bool) watchResult {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-ch:
			if ok(r) {
				return r
			}
		case <-deadline:
			t.Fatal("no matching reload within 5s")
			return watchResult{}
		}
	}
}

func gatewayPort(r watchResult) int32 {
	if r.err != nil || r.res == nil || len(r.res.Gateways) != 1 || len(r.res.Gateways[0].Spec.Listeners) != 1 {
		return 0
	}
	return r.res.Gateways[0].Spec.Listeners[0].Port
}

const gatewayOn9090 = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  gatewayClassName: sluice
  listeners: [{name: http, port: 9090, protocol: HTTP}]
`

func TestWatchFileEdit(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "gw.yaml", gateway)
	ch := startWatch(t, p)
	write(t, dir, "gw.yaml", gatewayOn9090)
	next(t, ch, func(r watchResult) bool { return gatewayPort(r) == 9090 })
	// An invalid edit is reported as an error.
	write(t, dir, "gw.yaml", "kind: [")
	next(t, ch, func(r watchResult) bool { return r.err != nil })
}

// TestWatchRenameOnSave replaces the file by renaming a new one over it, as editors do.
func TestWatchRenameOnSave(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "gw.yaml", gateway)
	ch := startWatch(t, p)
	tmp := write(t, dir, ".gw.yaml.swp", gatewayOn9090)
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	next(t, ch, func(r watchResult) bool { return gatewayPort(r) == 9090 })
	// The watch survives the rename: a second save is seen too.
	write(t, dir, "gw.yaml", gateway)
	next(t, ch, func(r watchResult) bool { return gatewayPort(r) == 8080 })
}

func TestWatchDirectoryNewFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "gw.yaml", gateway)
	ch := startWatch(t, dir)
	write(t, dir, "route.yaml", route)
	next(t, ch, func(r watchResult) bool { return r.err == nil && r.res != nil && len(r.res.HTTPRoutes) == 1 })
}

// TestWatchSymlinkSwap mimics a Kubernetes ConfigMap mount: the visible file is a symlink
// through "..data", and an update swaps "..data" to a new directory.
func TestWatchSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "..v1/gw.yaml", gateway)
	write(t, dir, "..v2/gw.yaml", gatewayOn9090)
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/gw.yaml", filepath.Join(dir, "gw.yaml")); err != nil {
		t.Fatal(err)
	}
	res, err := Load(dir)
	if err != nil || len(res.Gateways) != 1 {
		t.Fatalf("initial load: %v", err)
	}
	ch := startWatch(t, dir)
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	next(t, ch, func(r watchResult) bool { return gatewayPort(r) == 9090 })
}

func TestWatchMissingPath(t *testing.T) {
	err := Watch(context.Background(), []string{filepath.Join(t.TempDir(), "nope")}, func(*translate.Resources, error) {})
	if err == nil {
		t.Fatal("no error for a missing path")
	}
}
