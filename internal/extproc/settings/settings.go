// Package settings validates a TrafficPolicy's extProc and compiles it, defaults applied,
// into the Settings the ext_proc filter runs with. Validation reports every invalid field
// with its path; Compile precompiles the mutation rules, forward rules and CEL attributes
// so that nothing is parsed per request.
package settings

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/extproc/attrs"
	"github.com/sluice-gateway/sluice/internal/extproc/mutate"
)

// Defaults, as Envoy's ext_proc filter.
const (
	DefaultStatusOnError  = 500
	DefaultMessageTimeout = 200 * time.Millisecond
	DefaultMaxBufferSize  = 1 << 20
)

// Settings is one extProc, validated and compiled, defaults applied. It is immutable once
// built and safe for concurrent use; the filter keeps one per configured policy.
type Settings struct {
	// FailOpen continues without the processor on errors and timeouts (failureMode
	// FailOpen). Default false (FailClosed). Never true with a FullDuplexStreamed body.
	FailOpen bool
	// StatusOnError is the local reply status on processor errors when fail-closed.
	// Default 500; timeouts answer 504 regardless.
	StatusOnError int
	// MessageTimeout bounds the wait for each answer. Default 200ms; 0 times out at once.
	MessageTimeout time.Duration
	// MaxMessageTimeout is the ceiling of override_message_timeout. Default 0: overrides
	// are ignored.
	MaxMessageTimeout time.Duration
	// Mode is the configured processing mode. Default DefaultMode.
	Mode Mode
	// AllowModeOverride lets a headers answer's mode_override change Mode. Default false.
	AllowModeOverride bool
	// AllowedOverrideModes are the modes a mode_override may select; empty = any. Use
	// Mode.Allowed.
	AllowedOverrideModes []Mode
	// MaxBufferSize bounds Buffered and BufferedPartial bodies, in bytes. Default 1 MiB.
	MaxBufferSize int64
	// Rules are the compiled mutation rules; never nil (defaults when not configured).
	Rules *mutate.Rules
	// Forward are the compiled forward rules; nil forwards every header.
	Forward *mutate.ForwardRules
	// RequestAttributes and ResponseAttributes are nil when none are configured.
	RequestAttributes, ResponseAttributes *attrs.Program
	// MetadataContext is namespace -> program of that namespace's keys; nil when empty.
	// Its expressions are request-side (no response.*): they go with the first message.
	MetadataContext map[string]*attrs.Program
	// InitialMetadata is the gRPC metadata sent when each stream opens; nil when empty.
	InitialMetadata map[string]string
	// Observability sends without waiting and ignores the answers. Default false.
	Observability bool
	// DisableImmediateResponse treats an immediate_response as spurious. Default false.
	DisableImmediateResponse bool
	// RouteCacheAction is Default, Clear or Retain; never empty (Default).
	RouteCacheAction v1alpha1.RouteCacheAction
	// SendBodyWithoutWaitingForHeaderResponse: Streamed bodies go before the headers
	// answer. Default false.
	SendBodyWithoutWaitingForHeaderResponse bool
	// HeaderValueField is RawValue, Value or Both; never empty (RawValue).
	HeaderValueField v1alpha1.HeaderValueField
	// Disabled switches the processor off for the target; all other fields then hold
	// their defaults and mean nothing.
	Disabled bool
}

// Compile validates spec and compiles it, defaults applied. The error joins every
// validation error (one per invalid field, with its path from the extProc root). A nil
// spec gives the defaults.
func Compile(spec *v1alpha1.ExtProc) (*Settings, error) {
	s := &Settings{
		StatusOnError:    DefaultStatusOnError,
		MessageTimeout:   DefaultMessageTimeout,
		Mode:             DefaultMode,
		MaxBufferSize:    DefaultMaxBufferSize,
		RouteCacheAction: v1alpha1.RouteCacheDefault,
		HeaderValueField: v1alpha1.HeaderValueRaw,
	}
	var err error
	if spec == nil || spec.Disabled {
		s.Disabled = spec != nil
		s.Rules, err = mutate.CompileRules(nil)
		return s, err
	}
	if errs := Validate(spec, nil); len(errs) > 0 {
		joined := make([]error, len(errs))
		for i, e := range errs {
			joined[i] = e
		}
		return nil, fmt.Errorf("invalid extProc: %w", errors.Join(joined...))
	}
	s.FailOpen = spec.FailureMode == v1alpha1.FailOpen
	if spec.StatusOnError != nil {
		s.StatusOnError = int(*spec.StatusOnError)
	}
	if spec.MessageTimeout != nil {
		s.MessageTimeout = spec.MessageTimeout.Duration
	}
	if spec.MaxMessageTimeout != nil {
		s.MaxMessageTimeout = spec.MaxMessageTimeout.Duration
	}
	if po := spec.ProcessingOptions; po != nil {
		s.Mode = modeOf(po.RequestHeaderMode, po.ResponseHeaderMode, po.RequestTrailerMode,
			po.ResponseTrailerMode, po.RequestBodyMode, po.ResponseBodyMode)
		s.AllowModeOverride = po.AllowModeOverride
		for _, m := range po.AllowedOverrideModes {
			s.AllowedOverrideModes = append(s.AllowedOverrideModes, modeOf(m.RequestHeaderMode,
				m.ResponseHeaderMode, m.RequestTrailerMode, m.ResponseTrailerMode,
				m.RequestBodyMode, m.ResponseBodyMode))
		}
	}
	if spec.MaxBufferSize != nil {
		s.MaxBufferSize = spec.MaxBufferSize.Value()
	}
	// Validate compiled all of these once already; errors here would be bugs, but they
	// are still reported rather than ignored.
	if s.Rules, err = mutate.CompileRules(spec.MutationRules); err != nil {
		return nil, fmt.Errorf("mutationRules: %w", err)
	}
	if s.Forward, err = mutate.CompileForwardRules(spec.ForwardRules); err != nil {
		return nil, fmt.Errorf("forwardRules: %w", err)
	}
	if s.RequestAttributes, err = attrs.Compile(spec.RequestAttributes, false); err != nil {
		return nil, fmt.Errorf("requestAttributes: %w", err)
	}
	if s.ResponseAttributes, err = attrs.Compile(spec.ResponseAttributes, true); err != nil {
		return nil, fmt.Errorf("responseAttributes: %w", err)
	}
	for ns, exprs := range spec.MetadataContext {
		p, err := attrs.Compile(exprs, false)
		if err != nil {
			return nil, fmt.Errorf("metadataContext[%s]: %w", ns, err)
		}
		if p == nil {
			continue
		}
		if s.MetadataContext == nil {
			s.MetadataContext = make(map[string]*attrs.Program, len(spec.MetadataContext))
		}
		s.MetadataContext[ns] = p
	}
	if len(spec.GRPCInitialMetadata) > 0 {
		s.InitialMetadata = make(map[string]string, len(spec.GRPCInitialMetadata))
		for k, v := range spec.GRPCInitialMetadata {
			s.InitialMetadata[k] = v
		}
	}
	s.Observability = spec.ObservabilityMode
	s.DisableImmediateResponse = spec.DisableImmediateResponse
	if spec.RouteCacheAction != "" {
		s.RouteCacheAction = spec.RouteCacheAction
	}
	s.SendBodyWithoutWaitingForHeaderResponse = spec.SendBodyWithoutWaitingForHeaderResponse
	if spec.HeaderValueField != "" {
		s.HeaderValueField = spec.HeaderValueField
	}
	return s, nil
}
