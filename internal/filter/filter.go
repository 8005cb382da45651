// Package filter is the seam between the data plane and the request filters that run in it
// (external processing is the first). The data plane creates one Instance per request and
// filter, calls Request before the upstream is contacted and Response when the upstream (or
// the gateway itself) answers, and Done when the exchange ends. Filters see only net/http
// types and the Exchange, never the data plane's engine.
package filter

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// Factory makes the per-request instances of one configured filter. It is built once per
// configuration snapshot and is safe for concurrent use.
type Factory interface {
	// Start returns the filter's state for one request. It must not block.
	Start(ex *Exchange) Instance
}

// Instance is one filter's state for one request. The data plane calls its methods from the
// request's goroutine, in order: Request, then (unless Request answered locally) Response,
// then Done exactly once. Body readers that an instance installs may be read from other
// goroutines, but never concurrently with each other.
type Instance interface {
	// Request runs with the request headers, before the upstream is contacted. It may
	// change ex.Request: Method, URL (Path, RawPath, RawQuery), Host, Header,
	// ContentLength, Body (wrapping it to process the body as it streams) and Trailer. A
	// non-nil reply stops the request and is sent to the client instead.
	Request(ctx context.Context, ex *Exchange) *LocalReply

	// Response runs with the response headers, before they are sent to the client. It may
	// change resp: StatusCode, Header, ContentLength, Body (wrapping it) and Trailer (which
	// the data plane reads after Body returns io.EOF). A non-nil reply is sent instead.
	// A body reader that fails after the headers went out makes the data plane reset the
	// client's stream, the only thing HTTP allows at that point.
	Response(ctx context.Context, ex *Exchange, resp *http.Response) *LocalReply

	// Done ends the exchange: err is nil when the response was fully sent, otherwise why
	// it was not. The instance must release its goroutines and streams before returning
	// or soon after, without blocking on the network.
	Done(err error)
}

// Exchange is what the data plane knows of one request, shared with its filters.
type Exchange struct {
	// Request is the request as it will be sent upstream. Filters change it in place.
	Request *http.Request

	// ClientAddr and LocalAddr are the downstream connection's addresses.
	ClientAddr netip.AddrPort
	LocalAddr  netip.AddrPort
	// TLS is the downstream connection's TLS state, nil for cleartext.
	TLS *tls.ConnectionState
	// Scheme is "http" or "https", as the client spoke to the gateway.
	Scheme string
	// ID is the request's identifier (x-request-id).
	ID string
	// Start is when the request arrived.
	Start time.Time

	// Route and Backend name what the request was routed to, once known.
	Route   string
	Backend string

	// metadata is the dynamic metadata of the request, by namespace: filters add to it
	// with SetMetadata, later filters and the access log read it with Metadata. A lock
	// guards it because processors may answer from body readers on other goroutines.
	mdMu     sync.Mutex
	metadata map[string]*structpb.Struct

	// ClearRouteCache, set by a filter's Request, makes the data plane choose the route
	// again from the changed request before contacting the upstream.
	ClearRouteCache bool
}

// SetMetadata merges fields into the dynamic metadata namespace ns. A namespace's Struct
// is replaced, never changed in place, so what Metadata returned earlier stays valid.
func (ex *Exchange) SetMetadata(ns string, s *structpb.Struct) {
	if s == nil {
		return
	}
	ex.mdMu.Lock()
	defer ex.mdMu.Unlock()
	if ex.metadata == nil {
		ex.metadata = make(map[string]*structpb.Struct)
	}
	merged := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(s.Fields))}
	if cur := ex.metadata[ns]; cur != nil {
		for k, v := range cur.Fields {
			merged.Fields[k] = v
		}
	}
	for k, v := range s.Fields {
		merged.Fields[k] = v
	}
	ex.metadata[ns] = merged
}

// Metadata returns the dynamic metadata by namespace: a copy of the map, whose Structs
// must not be changed. nil when there is none.
func (ex *Exchange) Metadata() map[string]*structpb.Struct {
	ex.mdMu.Lock()
	defer ex.mdMu.Unlock()
	if len(ex.metadata) == 0 {
		return nil
	}
	out := make(map[string]*structpb.Struct, len(ex.metadata))
	for k, v := range ex.metadata {
		out[k] = v
	}
	return out
}

// LocalReply is a response made by the gateway itself instead of the upstream's.
// It is also an error, so that a body reader can carry one to the data plane.
type LocalReply struct {
	Status int
	Header http.Header
	Body   []byte
	// Details says why, for the access log and metrics
	// (for example "ext_proc_error_per-message_timeout_exceeded").
	Details string
}

func (r *LocalReply) Error() string {
	return fmt.Sprintf("local reply %d: %s", r.Status, r.Details)
}

// Reply returns a plain-text local reply.
func Reply(status int, details, body string) *LocalReply {
	h := make(http.Header, 1)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	return &LocalReply{Status: status, Header: h, Body: []byte(body), Details: details}
}
