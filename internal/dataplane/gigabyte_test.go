package dataplane

import (
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGigabyteFlatMemory sends 1 GiB up and 1 GiB down through the gateway while sampling
// the process's heap: bodies stream, so the heap stays far below the body size. The client,
// the gateway and the upstream share this process, so the bound covers all three.
func TestGigabyteFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB; skipped with -short")
	}
	const size = 1 << 30
	const heapBound = 64 << 20
	up := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			n, _ := io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Received", strconv.FormatInt(n, 10))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = io.CopyN(w, zeroReader{}, size)
	}))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", backendOf(t, "b", up))))
	c := &http.Client{Timeout: 5 * time.Minute}
	defer c.CloseIdleConnections()

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	req, _ := http.NewRequest(http.MethodPut, g.URL+"/upload", io.LimitReader(zeroReader{}, size))
	req.ContentLength = size
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Received"); got != strconv.Itoa(size) {
		t.Fatalf("upstream received %s bytes, want %d", got, size)
	}

	resp, err = c.Get(g.URL + "/download")
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("downloaded %d bytes (%v), want %d", n, err, size)
	}
	if p := peak.Load(); p > heapBound {
		t.Errorf("heap in use peaked at %d MiB while moving 1 GiB each way; want under %d MiB", p>>20, heapBound>>20)
	} else {
		t.Logf("heap in use peaked at %d MiB", p>>20)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
