package dataplane

import (
	"context"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// finish ends an exchange: it releases the filters, then logs and counts the request.
func (g *Gateway) finish(ex *exchange, err error) {
	for _, inst := range ex.instances {
		inst.Done(err)
	}
	if ex.status == 0 {
		// The handler ended without a response: the client went away or the stream was
		// reset.
		ex.status = 499
	}
	d := time.Since(ex.Start)
	g.metrics.observe(ex, d.Seconds())
	if g.opts.AccessLog == nil || !g.opts.AccessLog.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", ex.ID),
		slog.String("client", ex.ClientAddr.String()),
		slog.String("method", ex.in.Method),
		slog.String("host", ex.in.Host),
		slog.String("path", ex.in.URL.RequestURI()),
		slog.String("proto", ex.in.Proto),
		slog.String("route", ex.Route),
		slog.String("backend", ex.Backend),
		slog.Int("status", ex.status),
		slog.Int64("bytes_sent", ex.written),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	}
	if ex.upstreamDur > 0 {
		attrs = append(attrs, slog.Float64("upstream_ms", float64(ex.upstreamDur.Microseconds())/1000))
	}
	if ex.details != "" {
		attrs = append(attrs, slog.String("details", ex.details))
	}
	if ex.grpcStatus != "" {
		attrs = append(attrs, slog.String("grpc_status", ex.grpcStatus))
	}
	if ex.retries > 0 {
		attrs = append(attrs, slog.Int("retries", ex.retries))
	}
	if meta := ex.Metadata(); len(meta) > 0 {
		md := make(map[string]any, len(meta))
		for ns, s := range meta {
			if b, err := protojson.Marshal(s); err == nil {
				md[ns] = jsonRaw(b)
			}
		}
		attrs = append(attrs, slog.Any("metadata", md))
	}
	g.opts.AccessLog.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// jsonRaw is JSON text logged as itself.
type jsonRaw []byte

func (j jsonRaw) MarshalJSON() ([]byte, error) { return j, nil }

// newRequestID returns a random 128-bit identifier in hex, as x-request-id.
func newRequestID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	// Encoded on the stack: one allocation, the string's.
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// refused logs and counts a request the lean HTTP/1.1 server answered itself, before any
// handler, because its head was malformed or ambiguous: the access log and the request
// counter show every answer, including those to requests never routed.
func (g *Gateway) refused(c net.Conn, code int, reason string) {
	g.metrics.refused(code)
	if g.opts.AccessLog == nil || !g.opts.AccessLog.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	g.opts.AccessLog.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("client", c.RemoteAddr().String()),
		slog.Int("status", code),
		slog.String("details", "refused: "+reason),
	)
}
