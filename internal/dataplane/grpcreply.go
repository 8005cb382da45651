package dataplane

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/sluice-gateway/sluice/internal/filter"
)

// isGRPC reports whether r is a gRPC call: its content type is application/grpc, alone
// or with a +suffix or parameters (gRPC-Web's application/grpc-web is not).
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc") {
		return false
	}
	rest := ct[len("application/grpc"):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// grpcLocalReply turns a local reply to a gRPC call into what a gRPC client can read, as
// Envoy does: a trailers-only response (status 200, no body) whose grpc-status comes from
// the reply (a processor's immediate_response grpc_status) or else from its HTTP status,
// and whose grpc-message is the reply's body. A client would otherwise see a protocol
// error rather than why the call failed.
func grpcLocalReply(r *filter.LocalReply) *filter.LocalReply {
	h := make(http.Header, len(r.Header)+3)
	for k, v := range r.Header {
		h[k] = v
	}
	h.Del("Content-Length")
	h.Set("Content-Type", "application/grpc")
	if h.Get("Grpc-Status") == "" {
		h.Set("Grpc-Status", strconv.Itoa(int(grpcCode(r))))
	}
	if h.Get("Grpc-Message") == "" {
		if msg := strings.TrimSpace(string(r.Body)); msg != "" {
			h.Set("Grpc-Message", grpcMessage(msg))
		}
	}
	return &filter.LocalReply{Status: http.StatusOK, Header: h, Details: r.Details}
}

// grpcCode is the gRPC status of a local reply: Envoy's mapping of HTTP statuses, except
// that a backend that does not resolve is UNAVAILABLE, as GRPCRoute requires.
func grpcCode(r *filter.LocalReply) codes.Code {
	if r.Details == "backend_not_resolved" {
		return codes.Unavailable
	}
	switch r.Status {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

// grpcMessage percent-encodes msg as the gRPC protocol asks for grpc-message: bytes
// outside printable ASCII, and '%', as %XX.
func grpcMessage(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
