// Command grpcfloor measures the floor of header-only external processing: a bare grpc-go
// client doing, per stream, what a gateway does for a request whose request and response
// headers go to a processor (open a Process stream, send request headers, receive the
// answer, send response headers, receive the answer, close), with -c streams in flight.
//
// It prints one tab-separated line: streams/s, p50 ms, p99 ms, CPU ms per 1,000 streams
// (its own utime+stime over the measured window), peak RSS MiB, streams, errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func headerMap(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

// The messages resemble what the gateway sends for wrk's GET through the benchmark route.
var (
	reqMsg = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{EndOfStream: true, Headers: headerMap(
			":method", "GET", ":scheme", "http", ":authority", "headers.bench", ":path", "/",
			"x-forwarded-for", "127.0.0.1", "x-forwarded-proto", "http", "x-forwarded-host", "headers.bench",
			"x-request-id", "6f1c0d2e9a7b4c3d8e5f6a7b8c9d0e1f",
		)}}}
	respMsg = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(
			":status", "200", "server", "nginx", "date", "Thu, 26 Nov 2026 15:00:00 GMT",
			"content-type", "application/json", "content-length", "300",
		)}}}
)

func exchange(ctx context.Context, c extprocv3.ExternalProcessorClient) error {
	s, err := c.Process(ctx)
	if err != nil {
		return err
	}
	for _, m := range []*extprocv3.ProcessingRequest{reqMsg, respMsg} {
		if err := s.Send(m); err != nil {
			return err
		}
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("stream end: %v", err)
	}
	return nil
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18095", "processor host:port (h2c)")
	conc := flag.Int("c", 64, "streams in flight")
	dur := flag.Duration("d", 5*time.Second, "measured duration")
	warm := flag.Duration("warmup", 500*time.Millisecond, "unmeasured warm-up")
	flag.Parse()

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcfloor:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	ctx := context.Background()

	var measuring, stop atomic.Bool
	var errs atomic.Int64
	lat := make([][]time.Duration, *conc)
	var wg sync.WaitGroup
	for i := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			for !stop.Load() {
				t := time.Now()
				if err := exchange(ctx, client); err != nil {
					errs.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				if measuring.Load() {
					mine = append(mine, time.Since(t))
				}
			}
			lat[i] = mine
		}()
	}
	time.Sleep(*warm)
	cpu0, t0 := cpuNow(), time.Now()
	measuring.Store(true)
	time.Sleep(*dur)
	measuring.Store(false)
	cpu1, elapsed := cpuNow(), time.Since(t0)
	stop.Store(true)
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		fmt.Fprintln(os.Stderr, "grpcfloor: no stream completed; errors:", errs.Load())
		os.Exit(1)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[int(p*float64(len(all)-1))]) / 1e6
	}
	n := float64(len(all))
	fmt.Printf("%.1f\t%.3f\t%.3f\t%.2f\t%.1f\t%d\t%d\n",
		n/elapsed.Seconds(), pct(0.50), pct(0.99),
		float64(cpu1-cpu0)/1e6/(n/1000), peakRSSMiB(), len(all), errs.Load())
}
