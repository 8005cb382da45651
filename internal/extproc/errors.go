package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
	"github.com/sluice-gateway/sluice/internal/filter"
)

// phase is the kind of message sent to the processor.
type phase uint8

const (
	phaseRequestHeaders phase = iota
	phaseRequestBody
	phaseRequestTrailers
	phaseResponseHeaders
	phaseResponseBody
	phaseResponseTrailers
	numPhases
)

var phaseNames = [numPhases]string{
	"request_headers", "request_body", "request_trailers",
	"response_headers", "response_body", "response_trailers",
}

func (p phase) String() string { return phaseNames[p] }

func (p phase) isRequest() bool { return p <= phaseRequestTrailers }

// failKind is why an exchange with the processor failed.
type failKind uint8

const (
	_ failKind = iota
	// kindClosed: the processor ended the stream with OK before the exchange was over.
	// Not an error: the request continues without the processor, whatever the fail mode.
	kindClosed
	kindUnavailable
	kindTimeout
	kindSpurious
	kindMutation
	kindStream
	kindTooLarge
	// kindCanceled: the client went away; nothing is left to answer.
	kindCanceled
	numKinds
)

func (k failKind) metric() string {
	switch k {
	case kindUnavailable:
		return "unavailable"
	case kindTimeout:
		return "timeout"
	case kindSpurious:
		return "spurious"
	case kindMutation:
		return "mutation_rejected"
	case kindStream:
		return "stream_error"
	case kindTooLarge:
		return "too_large"
	}
	return ""
}

// failure is a failed exchange with the processor, classified.
type failure struct {
	kind failKind
	err  error
}

func (f *failure) Error() string { return fmt.Sprintf("ext_proc %s: %v", f.kind.metric(), f.err) }
func (f *failure) Unwrap() error { return f.err }

// Causes set on a stream's context when Sluice itself cancels it, so that the error
// gRPC then returns can be told apart from the client going away.
var (
	errMessageTimeout = errors.New("ext_proc message timeout")
	errStreamDone     = errors.New("ext_proc stream closed by the gateway")
)

// classify is the one place where gRPC results become failure kinds; the fail-open /
// fail-closed decision made from them is (*instance).fail.
func classify(streamCtx, clientCtx context.Context, err error) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	if errors.Is(err, io.EOF) {
		return &failure{kindClosed, err}
	}
	cause := context.Cause(streamCtx)
	if errors.Is(cause, errMessageTimeout) {
		return &failure{kindTimeout, errMessageTimeout}
	}
	if clientCtx != nil && clientCtx.Err() != nil {
		return &failure{kindCanceled, fmt.Errorf("client gone: %w", context.Cause(clientCtx))}
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.OK:
		return &failure{kindClosed, err}
	case codes.Unavailable:
		return &failure{kindUnavailable, err}
	case codes.DeadlineExceeded:
		return &failure{kindTimeout, err}
	case codes.ResourceExhausted:
		if strings.Contains(st.Message(), "larger than max") {
			return &failure{kindTooLarge, err}
		}
	case codes.Canceled:
		if errors.Is(cause, errStreamDone) {
			// We ended the stream ourselves (Done, or a failure already handled).
			return &failure{kindCanceled, cause}
		}
	}
	return &failure{kindStream, err}
}

func spurious(format string, args ...any) *failure {
	return &failure{kindSpurious, fmt.Errorf(format, args...)}
}

// mutationFailure wraps an error from mutate: a *mutate.Error fails the request.
func mutationFailure(err error) *failure {
	var me *mutate.Error
	if errors.As(err, &me) {
		return &failure{kindMutation, err}
	}
	return &failure{kindMutation, fmt.Errorf("applying mutation: %w", err)}
}

// errorReply is the local reply for a failure under fail-closed.
func errorReply(f *failure, statusOnError int) *filter.LocalReply {
	switch f.kind {
	case kindTimeout:
		return filter.Reply(http.StatusGatewayTimeout, "ext_proc_error_per-message_timeout_exceeded", "")
	case kindCanceled:
		// Nobody reads it; 499 is the customary "client closed request" in access logs.
		return filter.Reply(499, "ext_proc_client_disconnected", "")
	case kindSpurious:
		return filter.Reply(statusOnError, "ext_proc_error_spurious_message", "")
	case kindMutation:
		return filter.Reply(statusOnError, "ext_proc_error_mutation_rejected", "")
	case kindTooLarge:
		return filter.Reply(statusOnError, "ext_proc_error_message_too_large", "")
	case kindUnavailable:
		return filter.Reply(statusOnError, "ext_proc_error_unavailable", "")
	}
	return filter.Reply(statusOnError, "ext_proc_error_gRPC_error_"+status.Code(f.err).String(), "")
}
