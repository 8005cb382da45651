package extproc

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
)

// benchRequest is a typical browser-ish request.
func benchRequest() *http.Request {
	req := httptest.NewRequest("GET", "http://example.com/api/v1/items?page=2", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) bench")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Encoding", "gzip, deflate")
	req.Header.Set("Authorization", "Bearer abcdef0123456789")
	req.Header.Set("X-Request-Id", "7f0c7d5e-1b1e-4c59-9d0b-2f1b4f9c1a11")
	return req
}

func benchResponse(req *http.Request) *http.Response {
	return &http.Response{StatusCode: 200, Header: http.Header{
		"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}, "Date": {"Thu, 26 Nov 2026 14:00:00 GMT"},
	}, Body: http.NoBody, ContentLength: 0, Request: req}
}

func benchProc(b *testing.B) *testProc {
	p := newProc(b, echo)
	p.noRecord = true
	return p
}

// BenchmarkHeaderOnly: request and response headers through a loopback processor, the
// whole filter path (Start, Request, Response, Done), as the data plane drives it.
func BenchmarkHeaderOnly(b *testing.B) {
	p := benchProc(b)
	pool := NewPool(PoolOptions{})
	defer pool.Close()
	fac, err := pool.Build(&ir.ExtProc{Policy: "bench/proc", Backend: backendOf(p), Spec: spec()})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B) {
		ctx := context.Background()
		req := benchRequest()
		ex := &filter.Exchange{Request: req, Scheme: "http"}
		inst := fac.Start(ex)
		if lr := inst.Request(ctx, ex); lr != nil {
			b.Fatal(lr)
		}
		if lr := inst.Response(ctx, ex, benchResponse(req)); lr != nil {
			b.Fatal(lr)
		}
		inst.Done(nil)
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			run(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b)
			}
		})
	})
}

// BenchmarkGRPCFloor: a bare grpc-go bidi stream doing the same exchange (open, send
// request headers, receive, send response headers, receive, close), the floor that
// BenchmarkHeaderOnly is measured against.
func BenchmarkGRPCFloor(b *testing.B) {
	p := benchProc(b)
	conn, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	run := func(b *testing.B) {
		req := benchRequest()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := client.Process(ctx)
		if err != nil {
			b.Fatal(err)
		}
		msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: mutate.RequestHeaders(req, "http", nil, "RawValue"), EndOfStream: true}}}
		if err := s.Send(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		msg = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers: mutate.ResponseHeaders(benchResponse(req), nil, "RawValue"), EndOfStream: true}}}
		if err := s.Send(msg); err != nil {
			b.Fatal(err)
		}
		_ = s.CloseSend()
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			b.Fatal(err)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			run(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b)
			}
		})
	})
}
