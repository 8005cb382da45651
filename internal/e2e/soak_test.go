package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sluice-gateway/sluice/internal/sampleproc"
)

// TestSoak runs the real gateway (app.Run, file mode) with the sample processor over gRPC
// on loopback at a steady, bounded rate for SLUICE_SOAK_DURATION (default 60s), and
// checks that every response is right and that the process does not grow: it samples the
// goroutine count, the heap in use after a GC and the RSS every 10 s, and fits a
// least-squares line through them. The client, the gateway, the processor and the
// upstream share this process, so the figures cover all four.
//
// Two routes share the load: one with the processor on request and response headers, one
// that also sends the request body to it Buffered (4 KiB bodies, echoed by the upstream).
//
// The long run recorded in docs/reliability.md:
//
//	SLUICE_SOAK_DURATION=10m go test -run TestSoak -timeout 15m ./internal/e2e
//
// Not parallel on purpose: the samples must measure this test alone, not its neighbours.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test; skipped with -short")
	}
	duration := 60 * time.Second
	if s := os.Getenv("SLUICE_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 20*time.Second {
			t.Fatalf("SLUICE_SOAK_DURATION=%q: want a duration of at least 20s", s)
		}
		duration = d
	}
	// The rate holds under -race on two busy cores (the CI box); see docs/reliability.md.
	// SLUICE_SOAK_RATE changes it (requests per second, both routes together), to look
	// for rare failures faster.
	rate := 200
	if s := os.Getenv("SLUICE_SOAK_RATE"); s != "" {
		r, err := strconv.Atoi(s)
		if err != nil || r < 8 || r > 5000 {
			t.Fatalf("SLUICE_SOAK_RATE=%q: want requests per second, 8 to 5000", s)
		}
		rate = r
	}
	const (
		workers  = 8 // client goroutines, half per route, each paced by its own ticker
		bodySize = 4 << 10
		every    = 10 * time.Second
		// Bounds a leak would exceed: one 4 KiB body kept per request is ~50 MiB/min at
		// 200 req/s, one goroutine kept per request 12,000/min. Under load the goroutine
		// count moves by a dozen with the requests in flight and the keep-alive
		// connections open, so its slope bound only catches a leak of one goroutine in
		// a hundred requests; the count after the load (goroutineSlack) catches the
		// smaller ones.
		maxHeapSlope      = 1 << 20 // bytes per minute
		maxGoroutineSlope = 120     // goroutines per minute
		goroutineSlack    = 5       // after the load, against the count before it
	)

	// The upstream answers GET with nothing and POST with the body it got, and reports
	// what the processor did to the request; its `instructions` response header makes
	// the sample processor add x-soak-resp to the response on its way back.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read all before answering: an HTTP/1 handler cannot read its request after
		// writing its response.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := r.Header.Get("X-Soak-Id")
		w.Header().Set("X-Saw-Id", id)
		w.Header().Set("X-Saw-Added", r.Header.Get("X-Soak"))
		w.Header().Set("Instructions", `{"addHeaders":{"x-soak-resp":"`+id+`"}}`)
		_, _ = w.Write(b)
	}))
	t.Cleanup(up.Close)
	procAddr := startSampleWith(t, [][2]string{{"x-soak", "sample"}})
	g := startGateway(t, docs(gatewayYAML,
		routeYAML("headers", "headers.example.com", rule{backend: "up"}),
		routeYAML("body", "body.example.com", rule{backend: "up"}),
		backendYAML("up", up.Listener.Addr().String()),
		procBackendYAML("p", procAddr),
		policyYAML("headers", routeTarget("headers"), "", "p",
			"processingOptions: {requestHeaderMode: Send, responseHeaderMode: Send}"),
		policyYAML("body", routeTarget("body"), "", "p",
			"processingOptions: {requestHeaderMode: Send, responseHeaderMode: Send, requestBodyMode: Buffered}"),
	))

	body := make([]byte, bodySize)
	r := rand.NewChaCha8([32]byte{7})
	_, _ = r.Read(body)
	var seq atomic.Int64
	// one sends one request and returns what was wrong with its answer ("" when right).
	one := func(withBody bool) string {
		id := strconv.FormatInt(seq.Add(1), 10)
		host, method, send := "headers.example.com", "GET", io.Reader(nil)
		if withBody {
			host, method, send = "body.example.com", "POST", bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, g.url("/soak"), send)
		if err != nil {
			return err.Error()
		}
		req.Host = host
		req.Header.Set("X-Soak-Id", id)
		sentAt := time.Now()
		resp, err := g.client.Do(req)
		if err != nil {
			return fmt.Sprintf("%s %s #%s at %s: %v", method, host, id, sentAt.Format("15:04:05.000"), err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return fmt.Sprintf("%s %s #%s: reading the body: %v", method, host, id, err)
		case resp.StatusCode != 200:
			return fmt.Sprintf("%s %s #%s: status %d after %v (sent at %s), headers %v: %.200s", method, host, id, resp.StatusCode,
				time.Since(sentAt).Round(time.Millisecond), sentAt.Format("15:04:05.000"), resp.Header, got)
		case resp.Header.Get("X-Saw-Id") != id || resp.Header.Get("X-Saw-Added") != "sample":
			return fmt.Sprintf("%s %s: upstream saw id %q and x-soak %q, want %q and sample", method, host,
				resp.Header.Get("X-Saw-Id"), resp.Header.Get("X-Saw-Added"), id)
		case resp.Header.Get("X-Soak-Resp") != id:
			return fmt.Sprintf("%s %s: x-soak-resp %q, want %q (added by the processor on the response)", method, host,
				resp.Header.Get("X-Soak-Resp"), id)
		case withBody && !bytes.Equal(got, body):
			return fmt.Sprintf("%s %s: body of %d bytes is not the %d sent", method, host, len(got), len(body))
		case !withBody && len(got) != 0:
			return fmt.Sprintf("%s %s: body of %d bytes, want none", method, host, len(got))
		}
		return ""
	}
	// idle closes the idle connections of the client and of the upstream, so that the
	// goroutine count measures what the gateway keeps, not keep-alive connections.
	idle := func() {
		g.client.Transport.(*http.Transport).CloseIdleConnections()
		up.CloseClientConnections()
	}

	// Warm up (processor connection, pools, lazily made structures), then take the
	// baseline goroutine count.
	for i := range 20 {
		if e := one(i%2 == 1); e != "" {
			t.Fatalf("warm-up: %s", e)
		}
	}
	idle()
	time.Sleep(200 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	var (
		mu      sync.Mutex
		errs    []string
		nerrs   int
		sent    [2]atomic.Int64
		samples []soakSample
	)
	start := time.Now()
	samples = append(samples, takeSample(0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			withBody := w%2 == 1
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				e := one(withBody)
				sent[w%2].Add(1)
				if e != "" {
					mu.Lock()
					nerrs++
					if len(errs) < 20 {
						errs = append(errs, e)
					}
					mu.Unlock()
				}
			}
		}()
	}
	sampler := time.NewTicker(every)
	for done := false; !done; {
		select {
		case <-sampler.C:
			samples = append(samples, takeSample(time.Since(start)))
			done = time.Since(start) >= duration-time.Second
		case <-time.After(duration + every): // bounds the loop whatever the ticker does
			done = true
		}
	}
	sampler.Stop()
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	// After the load: idle connections closed, the goroutines return to the baseline.
	idle()
	var after int
	eventually(t, "the goroutines to return to the baseline after the load", func() bool {
		after = runtime.NumGoroutine()
		if after > baseline+goroutineSlack {
			idle()
			return false
		}
		return true
	})

	total := sent[0].Load() + sent[1].Load()
	var tb strings.Builder
	fmt.Fprintf(&tb, "soak: %v, %d requests (%d headers-only, %d with a 4 KiB Buffered body), %.1f req/s (target %d), %d errors\n",
		elapsed.Round(time.Second), total, sent[0].Load(), sent[1].Load(), float64(total)/elapsed.Seconds(), rate, nerrs)
	fmt.Fprintf(&tb, "%8s %11s %14s %14s %10s\n", "t", "goroutines", "heap_inuse", "heap_alloc", "rss")
	for _, s := range samples {
		fmt.Fprintf(&tb, "%8s %11d %11.2f MiB %11.2f MiB %6.1f MiB\n", s.at.Round(time.Second), s.goroutines,
			mib(s.heapInuse), mib(s.heapAlloc), mib(s.rss))
	}
	// The first sample is the warm-up (pools filling, the first GC cycles) and is dropped
	// from the fits.
	fit := samples[1:]
	gSlope := slopePerMinute(fit, func(s soakSample) float64 { return float64(s.goroutines) })
	hSlope := slopePerMinute(fit, func(s soakSample) float64 { return float64(s.heapInuse) })
	aSlope := slopePerMinute(fit, func(s soakSample) float64 { return float64(s.heapAlloc) })
	rSlope := slopePerMinute(fit, func(s soakSample) float64 { return float64(s.rss) })
	fmt.Fprintf(&tb, "slopes over %d samples (first dropped): goroutines %+.2f/min, heap_inuse %+.3f MiB/min, heap_alloc %+.3f MiB/min, rss %+.3f MiB/min\n",
		len(fit), gSlope, hSlope/(1<<20), aSlope/(1<<20), rSlope/(1<<20))
	fmt.Fprintf(&tb, "goroutines before the load %d, after it (idle connections closed) %d", baseline, after)
	t.Log("\n" + tb.String())

	for _, e := range errs {
		t.Error(e)
	}
	if nerrs > len(errs) {
		t.Errorf("... and %d more errors", nerrs-len(errs))
	}
	if nerrs > 0 {
		var lines []string
		for _, l := range strings.Split(g.logs.String(), "\n") {
			if (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) && len(lines) < 40 {
				lines = append(lines, l)
			}
		}
		t.Logf("the gateway's warnings and errors:\n%s", strings.Join(lines, "\n"))
	}
	if got := float64(total) / elapsed.Seconds(); got < float64(rate)/2 {
		t.Errorf("sustained %.1f req/s, less than half the %d asked: the gateway cannot keep up", got, rate)
	}
	if len(fit) < 2 {
		t.Fatalf("%d samples, too few to fit", len(fit))
	}
	if hSlope > maxHeapSlope {
		t.Errorf("heap in use grows %.3f MiB/min, want under %.0f MiB/min", hSlope/(1<<20), float64(maxHeapSlope)/(1<<20))
	}
	if gSlope > maxGoroutineSlope {
		t.Errorf("goroutines grow %.2f/min, want under %d/min", gSlope, maxGoroutineSlope)
	}
}

// soakSample is one observation of the process.
type soakSample struct {
	at                   time.Duration
	goroutines           int
	heapInuse, heapAlloc uint64
	rss                  uint64
}

// takeSample collects garbage first, so that the heap figures are what is still live.
func takeSample(at time.Duration) soakSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return soakSample{at: at, goroutines: runtime.NumGoroutine(), heapInuse: ms.HeapInuse, heapAlloc: ms.HeapAlloc, rss: vmRSS()}
}

// vmRSS is the process's resident set size from /proc/self/status, 0 where there is none.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// slopePerMinute is the least-squares slope of value over time, per minute.
func slopePerMinute(ss []soakSample, value func(soakSample) float64) float64 {
	n := float64(len(ss))
	var sx, sy, sxx, sxy float64
	for _, s := range ss {
		x, y := s.at.Minutes(), value(s)
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// startSampleWith runs the sample processor on a free port, adding the given headers to
// every request.
func startSampleWith(t *testing.T, add [][2]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	sampleproc.Register(gs, sampleproc.New(sampleproc.Options{AddHeaders: add}))
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}
