package extproc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// helperEnv runs TestDuplexEchoProcessorProcess as a processor in a child process.
const helperEnv = "SLUICE_EXTPROC_ECHO_HELPER"

// TestDuplexEchoProcessorProcess is not a test: it is the echoing processor of
// TestFullDuplexMemoryBounded, run in a child process so that the processor's own
// buffers do not count in the gateway's heap. It prints its port and serves until its
// standard input closes.
func TestDuplexEchoProcessorProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestFullDuplexMemoryBounded")
	}
	p := newProc(t, answerWith(duplexEcho))
	p.noRecord = true
	fmt.Printf("\nPORT %d\n", p.port)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startEchoProcessor starts the helper processor and returns its backend.
func startEchoProcessor(t testing.TB) *ir.Backend {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDuplexEchoProcessorProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if port, ok := strings.CutPrefix(sc.Text(), "PORT "); ok {
			n, err := strconv.Atoi(port)
			if err != nil {
				t.Fatal(err)
			}
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return &ir.Backend{Name: "backend/test/echo", Protocol: ir.UpstreamH2C,
				Endpoints: []ir.Endpoint{{Host: "127.0.0.1", Port: int32(n)}}}
		}
	}
	t.Fatalf("helper processor did not start: %v", sc.Err())
	return nil
}

// patternReader yields size bytes of a fixed pattern without holding them.
type patternReader struct {
	off, size int64
}

func patternByte(i int64) byte { return byte(i % 251) }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := int64(len(p))
	if rest := r.size - r.off; n > rest {
		n = rest
	}
	for i := range n {
		p[i] = patternByte(r.off + i)
	}
	r.off += n
	return int(n), nil
}

func (r *patternReader) Close() error { return nil }

// checkingWriter checks that what it is given is the pattern, in order.
type checkingWriter struct {
	off int64
	bad bool
	// pause after each write: an upstream slower than the processor.
	pause time.Duration
}

func (w *checkingWriter) Write(p []byte) (int, error) {
	for i, c := range p {
		if c != patternByte(w.off+int64(i)) {
			w.bad = true
			break
		}
	}
	w.off += int64(len(p))
	if w.pause > 0 {
		time.Sleep(w.pause)
	}
	return len(p), nil
}

// duplexSpec is request bodies in FULL_DUPLEX_STREAMED (trailers SEND, as the mode
// requires), nothing on the response.
func duplexSpec() *v1alpha1.ExtProc {
	return spec(bodies(duplex, none), trailers(v1alpha1.Send, v1alpha1.Skip), headers(v1alpha1.Send, v1alpha1.Skip))
}

// duplexUpload streams one size-byte request body through the filter, as the data plane
// does, and reads what the processor streams back as the upstream would.
func duplexUpload(fac filter.Factory, size int64, buf []byte, pause time.Duration) error {
	req := httptest.NewRequest("POST", "/", nil)
	req.Body, req.ContentLength = &patternReader{size: size}, size
	ex := &filter.Exchange{Request: req, Scheme: "http"}
	inst := fac.Start(ex)
	if lr := inst.Request(context.Background(), ex); lr != nil {
		inst.Done(nil)
		return fmt.Errorf("local reply %d", lr.Status)
	}
	w := &checkingWriter{pause: pause}
	_, err := io.CopyBuffer(w, req.Body, buf)
	_ = req.Body.Close()
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}
	if lr := inst.Response(context.Background(), ex, resp); lr != nil && err == nil {
		err = fmt.Errorf("local reply %d on the response", lr.Status)
	}
	inst.Done(err)
	switch {
	case err != nil:
		return err
	case w.off != size || w.bad:
		return fmt.Errorf("upstream got %d of %d bytes (corrupt: %v)", w.off, size, w.bad)
	}
	return nil
}

// Memory of FULL_DUPLEX_STREAMED bodies is a few chunks per body in flight, whatever
// the body's size: streams 64 MiB (8 concurrent 8 MiB bodies) through an echoing
// processor in another process, sampling the live heap after GC during the transfer,
// with an upstream as fast as the processor and with one slower than it (answers then
// wait in the gateway, bounded by the stream's gRPC receive window and the receiver's
// queue). Before chunkCodec, each 64 KiB chunk queued in gRPC pinned a 1 MiB buffer and
// this test saw 2.5-5.2 MiB per body (0.85-1.2 MiB after).
func TestFullDuplexMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 64 MiB")
	}
	be := startEchoProcessor(t)
	pool := NewPool(PoolOptions{})
	defer pool.Close()
	fac, err := pool.Build(&ir.ExtProc{Policy: "t/mem", Backend: be, Spec: duplexSpec()})
	if err != nil {
		t.Fatal(err)
	}
	// Warm up (connection, pools) before the baselines.
	if err := duplexUpload(fac, 1<<20, make([]byte, 32<<10), 0); err != nil {
		t.Fatal(err)
	}
	t.Run("fast upstream", func(t *testing.T) { duplexMemory(t, fac, 0) })
	// 1 ms per 32 KiB: ~30 MiB/s per body, a fraction of what the processor echoes.
	t.Run("slow upstream", func(t *testing.T) { duplexMemory(t, fac, time.Millisecond) })
}

func duplexMemory(t *testing.T, fac filter.Factory, pause time.Duration) {
	const (
		bodies = 8
		size   = 8 << 20
		// perBody: 32 chunks of 64 KiB. A body holds about 14-19 (the pump's read
		// buffer, two messages queued in gRPC's transport, the stream's receive window,
		// the receiver's queue of answers and the one being read), independent of its
		// size.
		perBody = 32 * streamChunk
	)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	var done atomic.Bool
	var peak uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for !done.Load() {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, bodies)
	for range bodies {
		wg.Go(func() {
			if err := duplexUpload(fac, size, make([]byte, 32<<10), pause); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	done.Store(true)
	<-sampled
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	grew := int64(peak) - int64(base)
	t.Logf("heap in use after GC: base %.1f MiB, peak %.1f MiB, %.0f KiB per body in flight (%d × %d MiB)",
		float64(base)/(1<<20), float64(peak)/(1<<20), float64(grew)/bodies/1024, bodies, size>>20)
	if grew > bodies*perBody {
		t.Errorf("heap grew by %.1f MiB with %d bodies in flight: more than %d KiB per body",
			float64(grew)/(1<<20), bodies, perBody>>10)
	}
}

// BenchmarkFullDuplex: one 1 MiB request body through FULL_DUPLEX_STREAMED and back
// from an echoing processor (in another process), the whole filter path. -benchmem
// shows the bytes allocated per body; SetBytes gives the throughput.
func BenchmarkFullDuplex(b *testing.B) {
	be := startEchoProcessor(b)
	pool := NewPool(PoolOptions{})
	defer pool.Close()
	fac, err := pool.Build(&ir.ExtProc{Policy: "bench/duplex", Backend: be, Spec: duplexSpec()})
	if err != nil {
		b.Fatal(err)
	}
	const size = 1 << 20
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		buf := make([]byte, 32<<10)
		for b.Loop() {
			if err := duplexUpload(fac, size, buf, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 32<<10)
			for pb.Next() {
				if err := duplexUpload(fac, size, buf, 0); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
